//! What a child process measures about itself: memory from `/proc/self/status` and the bytes
//! its engine left on disk.

use std::path::Path;

use crate::Result;

/// Reads a `kB` field of `/proc/self/status` (`VmHWM`: peak resident set; `VmRSS`: current
/// resident set), in KiB.
pub fn status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status for {field}: {e}"))?;
    parse_status_kib(&status, field)
}

fn parse_status_kib(status: &str, field: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let number = rest.trim().trim_end_matches("kB").trim();
            return number
                .parse()
                .map_err(|e| format!("/proc/self/status: {field} is {rest:?}: {e}").into());
        }
    }
    Err(format!("/proc/self/status has no {field} line").into())
}

/// Total length of the regular files under `dir`, recursively (symbolic links are not
/// followed).
pub fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("listing {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("listing {}: {e}", d.display()))?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(|e| format!("stat {}: {e}", entry.path().display()))?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() -> Result<()> {
        let s = "Name:\tcompare\nVmPeak:\t  200 kB\nVmHWM:\t   1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM")?, 1234);
        assert_eq!(parse_status_kib(s, "VmRSS")?, 1000);
        assert!(parse_status_kib(s, "VmSwap").is_err());
        assert!(status_kib("VmHWM")? > 0);
        Ok(())
    }

    #[test]
    fn sums_files_recursively() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a"), [0u8; 10])?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 32])?;
        assert_eq!(dir_bytes(dir.path())?, 42);
        Ok(())
    }
}
