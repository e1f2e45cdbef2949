//! The manifest parser on arbitrary bytes: it returns a manifest or an error,
//! never panics or hangs, and what it accepts can be written back out as a
//! part's manifest and looked up by column name, and parsing it again on demand
//! gives the same rows.
#![no_main]

use batchd::split::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse("manifest.csv", data.to_vec()) {
        // Fields are parsed again on demand: the second parse must see exactly
        // the rows the first one kept, each as wide as the header.
        let mut seen = 0;
        m.each_record(|i, rec| {
            assert_eq!(i, seen);
            assert_eq!(rec.len(), m.headers.len());
            seen += 1;
        });
        assert_eq!(seen, m.rows.len());
        let _ = m.part_bytes(m.rows.iter());
        let _ = m.column("file");
        let _ = m.column("filename");
        let _ = m.part_name();
    }
});
