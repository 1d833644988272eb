//! Every file the sidecar reads because its configuration names it: the configuration file
//! itself (at start and on reload), `${file:/path}` values, `ErrorPages.*.FilePath` templates,
//! `Provider.CABundleFile` and `redis.caFile`.
//!
//! One reader, so one set of rules holds everywhere:
//! - **regular files only**: the file is opened without blocking (`O_NONBLOCK`, which a regular
//!   file ignores) and checked with `fstat` on the open descriptor, so a FIFO (whose `open`
//!   would wait for a writer forever), `/dev/zero`, a socket or a directory is refused without
//!   reading a byte, and a path swapped between a check and the open cannot slip through;
//! - **size-capped**: at most `cap` bytes are read; a larger file is refused, never buffered;
//! - [`read_within`]: a path an inline block names must resolve (symbolic links followed)
//!   inside the directory the operator allowed, and every failure reads the same, so a block
//!   learns nothing about which paths exist outside it.
//!
//! The reads are synchronous: callers on the async runtime run them with `spawn_blocking`
//! (configuration reload, inline registration) so a slow disk never stalls a worker.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The largest configuration file read (4 MiB): far more than any real file.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// The largest file a configuration value names (`${file:}`, page templates, CA bundles;
/// 1 MiB).
pub const MAX_VALUE_FILE_BYTES: usize = 1 << 20;

/// Reads the regular file at `path`, at most `cap` bytes (see the module docs).
pub fn read_capped(path: &Path, cap: usize) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut out = Vec::new();
    // One byte over the cap tells "exactly the cap" from "larger".
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    file.take(limit).read_to_end(&mut out)?;
    if out.len() > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(out)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text(path: &Path, cap: usize) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Opens `path` for reading without blocking and refuses anything but a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        // A FIFO opened for reading waits for a writer; with O_NONBLOCK the open returns at
        // once and fstat below refuses it. O_NOCTTY: a terminal never becomes ours.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Why [`read_within`] refused: deliberately one case, whatever the cause (outside the
/// directory, missing, not a regular file, too large, not UTF-8), so the answer to an inline
/// block is no oracle for which paths exist. The cause is for the log only.
#[derive(Debug)]
pub struct Refused(pub String);

/// Reads `requested` (absolute, or relative to `dir`) as text when it resolves to a regular
/// file inside `dir` of at most `cap` bytes. Symbolic links are resolved before the check, so
/// a link inside `dir` cannot lead outside it.
pub fn read_within(dir: &Path, requested: &str, cap: usize) -> Result<String, Refused> {
    let root = dir
        .canonicalize()
        .map_err(|e| Refused(format!("allowed directory: {e}")))?;
    let wanted = Path::new(requested);
    let joined: PathBuf = if wanted.is_absolute() {
        wanted.to_path_buf()
    } else {
        root.join(wanted)
    };
    let real = joined.canonicalize().map_err(|e| Refused(e.to_string()))?;
    if !real.starts_with(&root) || real == root {
        return Err(Refused("outside the allowed directory".into()));
    }
    read_text(&real, cap).map_err(|e| Refused(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "toas-files-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn regular_files_are_read_up_to_the_cap() {
        let d = tmp("cap");
        let f = d.join("a.txt");
        std::fs::write(&f, "0123456789").unwrap();
        assert_eq!(read_text(&f, 10).unwrap(), "0123456789");
        let e = read_text(&f, 9).unwrap_err();
        assert!(e.to_string().contains("larger than 9"), "{e}");
    }

    #[test]
    fn devices_directories_and_fifos_are_refused_without_blocking() {
        let started = Instant::now();
        for p in ["/dev/zero", "/dev/urandom", "/proc/self", "/"] {
            let e = read_capped(Path::new(p), 1 << 20).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{p}: {e}");
        }
        let d = tmp("fifo");
        let fifo = d.join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // No writer ever opens it: a blocking open would hang this test.
        let e = read_capped(&fifo, 1024).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn blocks_read_only_inside_the_allowed_directory() {
        // /proc/self/environ reports itself as a regular file (of size 0), so the type check
        // alone would let it through: read_within confines a block to the allowed directory.
        let d = tmp("within");
        std::fs::write(d.join("page.html"), "<p>hi</p>").unwrap();
        assert_eq!(
            read_within(&d, "page.html", 1024).unwrap(),
            "<p>hi</p>".to_string()
        );
        let abs = d.join("page.html");
        assert!(read_within(&d, abs.to_str().unwrap(), 1024).is_ok());
        for bad in [
            "/proc/self/environ",
            "../../../../etc/passwd",
            "/etc/hostname",
            "missing.html",
            "",
            ".",
        ] {
            assert!(read_within(&d, bad, 1024).is_err(), "{bad}");
        }
        std::os::unix::fs::symlink("/etc/hostname", d.join("link")).unwrap();
        assert!(read_within(&d, "link", 1024).is_err());
        assert!(read_within(&d, "page.html", 3).is_err());
    }
}
