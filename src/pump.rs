//! The one byte pump of every splice (the CDP websocket proxy, the proxy hop in front of an
//! upstream proxy): bytes are copied as they come, never parsed, so a 30 MB CDP message
//! passes like any other bytes.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Size of a pump's buffer: one read takes at most this much.
const CHUNK: usize = 64 * 1024;

/// Copies `from` to `to` until end of input, then shuts `to`'s write side so the peer sees
/// the end too. `passed` hears the size of every chunk once it is written (byte counts,
/// activity stamps). A read or write error ends the copy and is returned; `to` is left as
/// it is then.
pub async fn pump<R, W>(
    from: &mut R,
    to: &mut W,
    mut passed: impl FnMut(usize),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        passed(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_everything_counts_it_and_passes_the_end_on() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (mut near, mut far) = tokio::io::duplex(4096);
        let mut out = Vec::new();
        let mut total = 0;
        let mut input = data.as_slice();
        let copy = pump(&mut input, &mut near, |n| total += n);
        let read = far.read_to_end(&mut out);
        let (copied, read) = tokio::join!(copy, read);
        copied.unwrap();
        read.unwrap();
        assert_eq!(out, data);
        assert_eq!(total, data.len());
    }
}
