//! The simulation's disk: redb's pages in memory, with what was synced kept apart from what
//! was written, so a crash loses exactly the writes no commit had synced.

use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct DiskState {
    live: Vec<u8>,
    durable: Vec<u8>,
    unsynced: Vec<(u64, Vec<u8>)>,
    unsynced_len: Option<u64>,
    dead: bool,
}

/// A redb backend in memory that loses, at a crash, every write not yet synced: a restart finds
/// only what the node's transactions committed durably.
#[derive(Debug, Clone, Default)]
pub struct SimDisk(Arc<Mutex<DiskState>>);

impl SimDisk {
    fn state(&self) -> MutexGuard<'_, DiskState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process dies: nothing written from now on reaches the disk.
    pub fn crash(&self) {
        self.state().dead = true;
    }

    /// The machine comes back: the disk holds what was synced.
    pub fn reboot(&self) {
        let mut s = self.state();
        s.live = s.durable.clone();
        s.unsynced.clear();
        s.unsynced_len = None;
        s.dead = false;
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "read past the end of the disk")
}

impl redb::StorageBackend for SimDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.state().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let s = self.state();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(out.len()).ok_or_else(out_of_range)?;
        let src = s.live.get(start..end).ok_or_else(out_of_range)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut s = self.state();
        if s.dead {
            return Ok(());
        }
        let n = usize::try_from(len).map_err(|_| out_of_range())?;
        s.live.resize(n, 0);
        s.unsynced_len = Some(len);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut s = self.state();
        if s.dead {
            return Ok(());
        }
        let s = &mut *s;
        if let Some(len) = s.unsynced_len.take() {
            s.durable.resize(usize::try_from(len).map_err(|_| out_of_range())?, 0);
        }
        for (offset, data) in s.unsynced.drain(..) {
            let start = usize::try_from(offset).map_err(|_| out_of_range())?;
            let end = start + data.len();
            if s.durable.len() < end {
                s.durable.resize(end, 0);
            }
            s.durable[start..end].copy_from_slice(&data);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut s = self.state();
        if s.dead {
            return Ok(());
        }
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(data.len()).ok_or_else(out_of_range)?;
        if s.live.len() < end {
            s.live.resize(end, 0);
        }
        s.live[start..end].copy_from_slice(data);
        s.unsynced.push((offset, data.to_vec()));
        Ok(())
    }
}
