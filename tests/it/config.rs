//! The shipped example config documents the defaults truthfully: as shipped (all
//! commented) and with every setting uncommented, it parses to the embedded defaults.

use batchd::config::Config;

fn example() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/batchd.toml")).unwrap()
}

#[test]
fn example_config_parses_to_the_defaults() {
    assert_eq!(Config::parse(&example()).unwrap(), Config::default());
}

#[test]
fn every_documented_value_is_the_default() {
    // Uncomment "# key = value" lines (not prose, not the unset file_column example).
    let uncommented: String = example()
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest.to_owned(),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let settings = uncommented.lines().filter(|l| l.contains(" = ") && !l.starts_with('#')).count();
    assert!(settings >= 14, "expected every key uncommented, got {settings}:\n{uncommented}");
    assert_eq!(Config::parse(&uncommented).unwrap(), Config::default());
}

/// "key = value" with a snake_case key; `file_column` is shown as an example
/// value, not its default (which is unset).
fn is_setting(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(k, _)| k != "file_column" && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

#[test]
fn unknown_keys_and_bad_values_name_the_key() {
    let e = Config::parse("[engine]\nworkerz = 2\n").unwrap_err().to_string();
    assert!(e.contains("workerz"), "{e}");
    let e = Config::parse("[http]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
    assert!(e.contains("listen"), "{e}");
}

/// The indented `[[watch]]` and `[[schedule]]` examples, uncommented, parse.
#[test]
fn trigger_examples_parse() {
    let body: String = example()
        .lines()
        .skip_while(|l| !l.starts_with("#   [[watch]]"))
        .filter_map(|l| l.strip_prefix("#   "))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Config::parse(&body).unwrap();
    assert_eq!(c.watch.len(), 1);
    assert_eq!(c.schedule.len(), 1);
    assert_eq!(c.schedule[0].timezone.as_deref(), Some("Europe/Oslo"));
    assert_eq!(c.schedule[0].misfire, batchd::config::Misfire::Once);
}

#[test]
fn bad_schedules_are_named() {
    let base = "[[schedule]]\nname = \"n\"\ndir = \"/tmp\"\n";
    for (extra, want) in [
        ("cron = \"0 2 * *\"\n", "4 fields"),
        ("cron = \"0 2 * * * * * *\"\n", "8 fields"),
        ("cron = \"61 2 * * *\"\n", "cron"),
        ("cron = \"0 2 * * *\"\ntimezone = \"Mars/Olympus\"\n", "IANA"),
        ("cron = \"0 2 * * *\"\nmisfire = \"twice\"\n", "misfire"),
    ] {
        let e = Config::parse(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(e.contains(want), "{extra}: {e}");
    }
    let twice = format!("{base}cron = \"0 2 * * *\"\n{base}cron = \"0 3 * * *\"\n");
    assert!(Config::parse(&twice).unwrap_err().to_string().contains("used twice"));
}
