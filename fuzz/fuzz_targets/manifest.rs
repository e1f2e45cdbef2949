//! The manifest parser on arbitrary bytes: it returns a manifest or an error,
//! never panics or hangs, and what it accepts can be written back out as a
//! part's manifest and looked up by column name.
#![no_main]

use batchd::split::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse("manifest.csv", data.to_vec()) {
        let _ = m.part_bytes(m.rows.iter());
        let _ = m.column("file");
        let _ = m.column("filename");
        let _ = m.part_name();
    }
});
