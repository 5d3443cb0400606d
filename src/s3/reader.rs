/*!
Reading an object with ranged GETs: the first request can be sent before anything is
answered (`open`), and an answer cut short (a storage node lost mid-answer, a body that
stalled) is resumed from the byte where it stopped, a few times, before it is an error.
*/

use super::{ATTEMPTS, ObjectStore, SIGNED_FOR};
use rusty_s3::actions::{GetObject, S3Action};
use std::io::{self, Read};

/// Bytes of an object read with ranged GETs; a cut answer is resumed, a lost store is an error.
pub struct ObjectReader {
    pub(super) store: std::sync::Arc<ObjectStore>,
    pub(super) key: String,
    pub(super) position: u64,
    pub(super) end: u64,
    pub(super) body: Option<ureq::BodyReader<'static>>,
}

impl ObjectReader {
    /// Send the first request now (else the first read does).
    pub fn open(&mut self) -> io::Result<()> {
        let what = format!("GET {}", self.key);
        let (key, position, end) = (self.key.clone(), self.position, self.end);
        let store = self.store.clone();
        let body = store
            .retry(&what, || {
                let url =
                    GetObject::new(store.bucket(), Some(&store.credentials), &key).sign(SIGNED_FOR);
                let range = format!("bytes={position}-{}", end - 1);
                let sent = store.agent.get(url.as_str()).header("Range", range).call();
                Ok(ObjectStore::answered(&what, sent)?
                    .into_body()
                    .into_reader())
            })
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.body = Some(body);
        Ok(())
    }
}

impl Read for ObjectReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.end || out.is_empty() {
            return Ok(0);
        }
        let want = out
            .len()
            .min((self.end - self.position).min(usize::MAX as u64) as usize);
        for _ in 0..ATTEMPTS {
            if self.body.is_none() {
                self.open()?;
            }
            let Some(body) = self.body.as_mut() else {
                continue;
            };
            match body.read(&mut out[..want]) {
                Ok(0) | Err(_) => {
                    // Cut short (or the connection failed): resume from here.
                    self.body = None;
                }
                Ok(n) => {
                    self.position += n as u64;
                    return Ok(n);
                }
            }
        }
        Err(io::Error::other(format!(
            "GET {}: the answer kept ending at byte {} of {}",
            self.key, self.position, self.end
        )))
    }
}
