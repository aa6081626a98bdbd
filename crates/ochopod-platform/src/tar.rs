//! One regular file as a tar archive: what the Engine API's archive upload takes. A few lines
//! of the ustar format rather than a crate for it.

const BLOCK: usize = 512;

/// A ustar archive holding `name` (a bare file name, under 100 bytes) with `content`, mode 0644.
pub fn single_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; BLOCK];
    let name = name.as_bytes();
    header[..name.len().min(99)].copy_from_slice(&name[..name.len().min(99)]);
    field(&mut header[100..108], 0o644, 7);
    field(&mut header[108..116], 0, 7);
    field(&mut header[116..124], 0, 7);
    field(&mut header[124..136], content.len() as u64, 11);
    field(&mut header[136..148], 0, 11);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    field(&mut header[148..155], sum, 6);
    header[155] = b' ';
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
    out
}

/// `value` in octal, zero-padded to `digits`, then a NUL.
fn field(slot: &mut [u8], value: u64, digits: usize) {
    let text = format!("{value:0digits$o}\0");
    slot[..text.len()].copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_system_tar_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("ochopod-tar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("a.tar");
        std::fs::write(&archive, super::single_file("pod.yaml", b"cluster: x\n")).unwrap();
        let out = std::process::Command::new("tar").arg("-xOf").arg(&archive).output().expect("tar is installed");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, b"cluster: x\n");
    }
}
