//! Does a file's content match the digest its package recorded? SHA-256 digests (rpm's
//! default) are compared with the hash the scan already made; other algorithms (dpkg's MD5)
//! need the file read again, and then its SHA-256 is computed in the same pass so a file
//! that changed since the scan is noticed instead of verified by mistake.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::packages::{DigestAlgo, FileDigest};

/// The result of comparing a file's content with a recorded digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Yes,
    No,
    /// The file's content changed since the scan hashed it: decide later.
    ChangedMeanwhile,
    /// Cannot tell: unreadable now, or an algorithm fimd does not compute (SHA-1).
    Unknown,
}

/// Compare the content whose SHA-256 the scan found (`scanned`) with `recorded`.
pub fn content_matches(path: &Path, scanned: &[u8; 32], recorded: &FileDigest) -> Match {
    let same = |b: bool| if b { Match::Yes } else { Match::No };
    match recorded.algo {
        DigestAlgo::Sha256 => same(recorded.bytes.as_slice() == scanned.as_slice()),
        DigestAlgo::Md5 => reread::<Md5>(path, scanned, &recorded.bytes),
        DigestAlgo::Sha384 => reread::<Sha384>(path, scanned, &recorded.bytes),
        DigestAlgo::Sha512 => reread::<Sha512>(path, scanned, &recorded.bytes),
        DigestAlgo::Sha1 => Match::Unknown,
    }
}

/// Read `path` once, computing its SHA-256 and `D`.
fn reread<D: Digest>(path: &Path, scanned: &[u8; 32], recorded: &[u8]) -> Match {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NOFOLLOW | O_NONBLOCK: never follow a symlink swapped in, never hang on a FIFO.
    let Ok(at) = crate::scan::reach::reach(path) else {
        return Match::Unknown;
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(at.path());
    let Ok(mut file) = file else {
        return Match::Unknown;
    };
    let (mut sha, mut other) = (Sha256::new(), D::new());
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sha.update(&buf[..n]);
                other.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Match::Unknown,
        }
    }
    if sha.finalize().as_slice() != scanned.as_slice() {
        return Match::ChangedMeanwhile;
    }
    if other.finalize().as_slice() == recorded {
        Match::Yes
    } else {
        Match::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    #[test]
    fn md5_sha256_and_changed_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin");
        std::fs::write(&f, b"hello\n").unwrap();
        let md5 = FileDigest {
            algo: DigestAlgo::Md5,
            bytes: hex::decode("b1946ac92492d2347c6235b4d2611184").unwrap(),
        };
        assert_eq!(content_matches(&f, &sha(b"hello\n"), &md5), Match::Yes);
        let other = FileDigest {
            algo: DigestAlgo::Md5,
            bytes: vec![0; 16],
        };
        assert_eq!(content_matches(&f, &sha(b"hello\n"), &other), Match::No);
        // The scan saw other bytes than are there now.
        assert_eq!(
            content_matches(&f, &sha(b"evil\n"), &md5),
            Match::ChangedMeanwhile
        );
        let s256 = FileDigest {
            algo: DigestAlgo::Sha256,
            bytes: sha(b"hello\n").to_vec(),
        };
        assert_eq!(content_matches(&f, &sha(b"hello\n"), &s256), Match::Yes);
        assert_eq!(content_matches(&f, &sha(b"x"), &s256), Match::No);
        let gone = dir.path().join("gone");
        assert_eq!(content_matches(&gone, &sha(b""), &md5), Match::Unknown);
    }
}
