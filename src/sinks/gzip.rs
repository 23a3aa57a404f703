//! Whole-body gzip for the HTTP sinks (Splunk HEC, Logs Ingestion API): one request body in,
//! one gzip member out, flate2 on zlib-rs (measured against miniz_oxide and libdeflate in
//! BENCHMARKS.md). CPU-bound: callers run it on the blocking pool, never on the runtime's
//! threads. The archive sink streams its members to a file instead (`archive/writer.rs`).

use std::io::Write;

/// gzip `raw` at `level` (1 fastest … 9 smallest).
pub fn gzip(raw: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 8 + 64),
        flate2::Compression::new(level),
    );
    encoder.write_all(raw)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_level() {
        use std::io::Read;
        let raw = b"{\"event\":1}{\"event\":2}".repeat(100);
        for level in 1..=9 {
            let packed = gzip(&raw, level).unwrap();
            assert!(packed.len() < raw.len(), "level {level}");
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&packed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, raw, "level {level}");
        }
    }
}
