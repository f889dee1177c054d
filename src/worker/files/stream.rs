//! Files read from disk as [`ByteStream`]s in bounded chunks: one file, or a zip of the files
//! dir written on a blocking thread as the client reads it. Neither holds a whole file in
//! memory; both follow the reader's pace (a chunk is read only when the last one was taken).
//!
//! A zip holds a blocking thread while it is written, so zips are bounded: at most
//! [`MAX_ZIPS`] at once (the caller takes a permit from [`ZIPS`]), and one whose reader takes
//! nothing for [`ZIP_STALL`] is abandoned, its thread freed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc};

use crate::host::ByteStream;
use crate::worker::files;

/// Bytes read or zipped per chunk.
const CHUNK: usize = 256 << 10;
/// Zip chunks queued between the zipping thread and the response: the zip's share of memory
/// is at most this many chunks.
const ZIP_QUEUE: usize = 4;
/// Zips written at once.
pub const MAX_ZIPS: usize = 4;
/// The permits of the zips being written.
pub static ZIPS: Semaphore = Semaphore::const_new(MAX_ZIPS);
/// How long a zip waits for its client to take a chunk before it is abandoned.
pub const ZIP_STALL: Duration = Duration::from_secs(60);

/// The bytes of `file`, `len` of them, read chunk by chunk on tokio's blocking pool.
pub fn file_body(file: std::fs::File, len: u64) -> ByteStream {
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        // A file that grows while it is sent (a download in progress) is cut at the length the
        // headers announced.
        let want = CHUNK.min(usize::try_from(left).unwrap_or(CHUNK));
        let mut buf = BytesMut::with_capacity(want);
        while buf.len() < want {
            let mut rest = (&mut file).take((want - buf.len()) as u64);
            if rest.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            // Shorter than announced (truncated meanwhile): end the body early, which the
            // client sees as an incomplete response rather than a wrong file.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        let n = buf.len() as u64;
        Ok::<_, io::Error>(Some((buf.freeze(), (file, left - n))))
    });
    stream.boxed()
}

/// `files.zip` of every file under `root` (uploads in progress left out), deflated. `permit`
/// is held until the zip is written or abandoned, `stall` long without the client taking a
/// chunk.
pub fn zip_body(root: PathBuf, permit: impl Send + 'static, stall: Duration) -> ByteStream {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(ZIP_QUEUE);
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let sink = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            rt,
            stall,
        };
        if let Err(err) = write_zip(&root, sink) {
            // The 200 and part of the zip are out: ending the body with an error makes the
            // client see a broken transfer, not a short zip.
            match err.kind() {
                io::ErrorKind::BrokenPipe => {}
                io::ErrorKind::TimedOut => {
                    tracing::info!(%err, dir = %root.display(), "files.zip abandoned");
                }
                _ => tracing::warn!(%err, dir = %root.display(), "files.zip failed"),
            }
            // Never waits: a client that stopped reading does not hold this thread.
            let _ = tx.try_send(Err(err));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    stream.boxed()
}

fn write_zip(root: &Path, sink: ChannelWriter) -> io::Result<()> {
    let mut zip = zip::ZipWriter::new_stream(sink);
    for entry in files::list(root) {
        let rel = Path::new(&entry.path);
        let opened = files::resolve(root, rel, false).and_then(|p| files::open_nofollow(&p));
        let mut file = match opened {
            Ok(f) => f,
            // Deleted (or replaced by a link) since the listing: not part of the zip.
            Err(_) => continue,
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            // Zip64 headers where the file is near the 4 GiB limit of plain zip entries (with a
            // margin: a download in progress still grows).
            .large_file(entry.size >= 1 << 31);
        zip.start_file(entry.path.as_str(), options)
            .map_err(io::Error::other)?;
        io::copy(&mut file, &mut zip)?;
    }
    let mut sink = zip.finish().map_err(io::Error::other)?.into_inner();
    sink.flush()
}

/// A `Write` that hands bounded chunks to the async side, blocking while the queue is full,
/// up to `stall`.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
    rt: tokio::runtime::Handle,
    stall: Duration,
}

impl ChannelWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.rt.block_on(tokio::time::timeout(
            self.stall,
            self.tx.send(Ok(Bytes::from(chunk))),
        ));
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {}s", self.stall.as_secs()),
            )),
        }
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_streams_in_chunks_and_stops_at_its_length() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut body = file_body(file, data.len() as u64 - 50);
        let mut got = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK);
            got.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert_eq!(got, data[..data.len() - 50]);
        assert_eq!(chunks, 3);
    }

    #[tokio::test]
    async fn the_zip_holds_every_file_but_uploads_in_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/a.txt"), "alpha").unwrap();
        let big: Vec<u8> = (0..(CHUNK * 3)).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(root.join("big.bin"), &big).unwrap();
        std::fs::write(root.join(".bro-upload-x"), "half").unwrap();
        let chunks: Vec<io::Result<Bytes>> =
            zip_body(root.to_path_buf(), (), ZIP_STALL).collect().await;
        let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
        let mut zip = zip::ZipArchive::new(io::Cursor::new(bytes)).unwrap();
        let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["big.bin", "d/a.txt"]);
        let mut out = Vec::new();
        io::Read::read_to_end(&mut zip.by_name("big.bin").unwrap(), &mut out).unwrap();
        assert_eq!(out, big);
    }

    #[tokio::test]
    async fn a_zip_nobody_reads_frees_its_thread() {
        let tmp = tempfile::tempdir().unwrap();
        // Incompressible, so the zip is far more than the queue holds.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..(CHUNK * 8))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(tmp.path().join("noise.bin"), &noise).unwrap();
        let zips = std::sync::Arc::new(Semaphore::new(1));
        let permit = zips.clone().try_acquire_owned().unwrap();
        let body = zip_body(tmp.path().to_path_buf(), permit, Duration::from_millis(200));
        // The body is held, never read: the zip stalls, then gives its permit back.
        let freed = async {
            while zips.available_permits() == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), freed)
            .await
            .expect("the stalled zip still holds its permit");
        drop(body);
    }
}
