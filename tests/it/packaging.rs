//! The Debian package: built with cargo-deb from the test binary (`cargo deb
//! --no-build`; `packaging/build-deb.sh` is the full build), unpacked with
//! `dpkg-deb`, its units checked by `systemd-analyze verify` (stderr empty) and
//! `systemd-analyze security --offline=yes` (exposure under 2.0), and its
//! `/etc/batchd/batchd.toml` parsed to the embedded defaults.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helper::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the .deb into `dir` and unpacks it (files and control) into `dir/root`.
fn build_and_unpack(dir: &Path) -> PathBuf {
    let found = Command::new("cargo").args(["deb", "--version"]).output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "cargo-deb is needed: cargo install cargo-deb --locked (.ci/run does this)"
    );
    run(Command::new("cargo")
        .current_dir(ROOT)
        .args(["deb", "--no-build", "--strip", "--output"])
        .arg(dir));
    let deb = listing(dir).into_iter().find(|n| n.ends_with(".deb")).expect("a .deb");
    let root = dir.join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(dir.join(&deb)).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(dir.join(&deb)).arg(root.join("DEBIAN")));
    root
}

/// The unit with `/usr/bin/batchd` pointed at the unpacked binary: verify
/// checks that ExecStart exists, and nothing is installed on this machine.
fn staged_unit(root: &Path, name: &str, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(name)).unwrap();
    let bin = root.join("usr/bin/batchd");
    let path = out.join(name);
    std::fs::write(&path, text.replace("/usr/bin/batchd", bin.to_str().unwrap())).unwrap();
    path
}

#[test]
fn the_deb_installs_checked_units_and_a_default_config() {
    let env = Env::new();
    let root = build_and_unpack(&env.path("deb"));
    for f in [
        "usr/bin/batchd",
        "usr/lib/systemd/system/batchd.service",
        "usr/lib/systemd/system/batchd@.service",
        "usr/lib/sysusers.d/batchd.conf",
        "usr/lib/tmpfiles.d/batchd.conf",
        "usr/share/doc/batchd/README.md",
        "etc/batchd/batchd.toml",
    ] {
        assert!(root.join(f).is_file(), "{f} missing from the package");
    }
    let control = std::fs::read_to_string(root.join("DEBIAN/control")).unwrap();
    assert!(control.contains("Package: batchd") && control.contains("systemd"), "{control}");
    assert_eq!(
        std::fs::read_to_string(root.join("DEBIAN/conffiles")).unwrap().trim(),
        "/etc/batchd/batchd.toml"
    );
    let postinst = std::fs::read_to_string(root.join("DEBIAN/postinst")).unwrap();
    let (users, start) = (
        postinst.find("systemd-sysusers batchd.conf").unwrap(),
        postinst.find("deb-systemd-invoke").unwrap(),
    );
    assert!(users < start, "the user exists before the unit starts");
    let sysusers = std::fs::read_to_string(root.join("usr/lib/sysusers.d/batchd.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u batchd ")) && sysusers.lines().any(|l| l.starts_with("g batchd ")));

    // The shipped config parses to the defaults, with the packaged binary too.
    let etc = std::fs::read_to_string(root.join("etc/batchd/batchd.toml")).unwrap();
    assert_eq!(batchd::config::Config::parse(&etc).unwrap(), batchd::config::Config::default());
    run(Command::new(root.join("usr/bin/batchd"))
        .args(["check-config", "--config"])
        .arg(root.join("etc/batchd/batchd.toml")));

    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/batchd.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "ExecStartPre=/usr/bin/batchd check-config --config /etc/batchd/batchd.toml",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "StateDirectory=batchd",
        "ReadWritePaths=-/var/spool/batchd",
        "UMask=0007",
    ] {
        assert!(unit.lines().any(|l| l == line), "batchd.service lacks {line}");
    }

    let staged = env.path("units");
    std::fs::create_dir_all(&staged).unwrap();
    let plain = staged_unit(&root, "batchd.service", &staged);
    staged_unit(&root, "batchd@.service", &staged);
    for unit in [plain.clone(), staged.join("batchd@lab.service")] {
        let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && stderr.is_empty(), "verify {}: {stderr}", unit.display());
    }
    for unit in [plain, staged.join("batchd@lab.service")] {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| {
                l.split_once("Overall exposure level for ")?
                    .1
                    .split_once(": ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no exposure level in: {text}"));
        eprintln!("{}: exposure {score}", unit.display());
        assert!(score < 2.0, "{}: exposure {score} (the threshold is 2.0)\n{text}", unit.display());
    }
}
