//! A connection's open files: `fs/open`, `fs/readBlock`, `fs/writeBlock`, `fs/close`.
//!
//! Handles belong to the connection (at most [`MAX_OPEN_HANDLES`]) and close with it; a
//! `replace` handle that was never closed leaves the old file untouched (its temporary
//! sibling is removed). Every operation on a handle takes a [`Turn`] at admission, in wire
//! order, and runs after the earlier ones on the same handle — so a client may pipeline
//! `open`, blocks and `close` — while the file I/O itself runs off the runtime under the
//! request's claim (a slot of the connection and a deadline, see `limit`). The
//! id is reserved at admission too: duplicates and the limit are judged in wire order.
//! A read handle closes by itself once a block reaches end of file.

use super::atomic::Replacement;
use super::confine::Confinement;
use super::limit::{Busy, Claim, Slots};
use super::paths::open_regular;
use crate::process::write_order::{Turn, WriteOrder};
use crate::sync::lock;
use rexec_protocol::RpcError;
use rexec_protocol::fs::{
    MAX_BLOCK_BYTES, MAX_HANDLE_ID_BYTES, MAX_OPEN_HANDLES, OpenMode, OpenParams,
};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct FileHandles {
    table: Mutex<HashMap<String, Arc<Handle>>>,
    /// The connection's share of fs threads, for every `fs/*` request, not only handles.
    slots: Slots,
}

struct Handle {
    order: Arc<WriteOrder>,
    state: Mutex<HandleState>,
}

enum HandleState {
    Opening,
    Open(Arc<OpenFile>),
    Closed,
}

struct OpenFile {
    file: File,
    /// Set for `replace` handles: committed by `fs/close`.
    replacement: Mutex<Option<Replacement>>,
}

/// An operation admitted on a handle, waiting for its turn.
pub struct Admitted {
    handles: Arc<FileHandles>,
    id: String,
    handle: Arc<Handle>,
    turn: Turn,
}

#[derive(Clone, Copy)]
pub enum BlockKind {
    Read,
    Write,
}

impl BlockKind {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }
}

pub struct ReadBlock {
    pub bytes: Vec<u8>,
    pub eof: bool,
}

impl FileHandles {
    /// A slot for one `method` request of this connection (see `limit`).
    pub fn claim(&self, method: &'static str, timeout: Duration) -> Result<Claim, Busy> {
        self.slots.claim(method, timeout)
    }

    /// Reserve `params.handle_id`; the file is opened when the returned turn comes.
    pub fn admit_open(self: &Arc<Self>, params: &OpenParams) -> Result<Admitted, RpcError> {
        check_id(&params.handle_id)?;
        let mut table = lock(&self.table);
        if table.contains_key(&params.handle_id) {
            return Err(RpcError::invalid_request(format!(
                "file handle `{}` already exists",
                params.handle_id
            )));
        }
        if table.len() >= MAX_OPEN_HANDLES {
            return Err(RpcError::invalid_request(format!(
                "at most {MAX_OPEN_HANDLES} file handles may be open per connection"
            )));
        }
        let handle = Arc::new(Handle {
            order: Arc::new(WriteOrder::default()),
            state: Mutex::new(HandleState::Opening),
        });
        table.insert(params.handle_id.clone(), Arc::clone(&handle));
        Ok(self.admitted(&params.handle_id, handle))
    }

    /// Find an open (or opening) handle for a block of `len` bytes (checked first, as
    /// upstream does, so a bad length is reported even for an unknown handle).
    pub fn admit_block(
        self: &Arc<Self>,
        handle_id: &str,
        block: BlockKind,
        len: usize,
    ) -> Result<Admitted, RpcError> {
        check_id(handle_id)?;
        if !(1..=MAX_BLOCK_BYTES).contains(&len) {
            return Err(RpcError::invalid_request(format!(
                "file {} block length must be between 1 and {MAX_BLOCK_BYTES}",
                block.name()
            )));
        }
        let handle = lock(&self.table)
            .get(handle_id)
            .cloned()
            .ok_or_else(|| unknown(handle_id))?;
        Ok(self.admitted(handle_id, handle))
    }

    /// Forget the handle now (its id is free at once); the file closes after the
    /// operations admitted before. `None` when there is no such handle.
    pub fn admit_close(self: &Arc<Self>, handle_id: &str) -> Result<Option<Admitted>, RpcError> {
        check_id(handle_id)?;
        let handle = lock(&self.table).remove(handle_id);
        Ok(handle.map(|handle| self.admitted(handle_id, handle)))
    }

    fn admitted(self: &Arc<Self>, id: &str, handle: Arc<Handle>) -> Admitted {
        Admitted {
            handles: Arc::clone(self),
            id: id.to_owned(),
            turn: handle.order.take_turn(),
            handle,
        }
    }

    /// Drop `handle` from the table if it is still the one registered under `id`.
    fn forget(&self, id: &str, handle: &Arc<Handle>) {
        let mut table = lock(&self.table);
        if table.get(id).is_some_and(|h| Arc::ptr_eq(h, handle)) {
            table.remove(id);
        }
    }
}

impl Admitted {
    /// Open the file, confined to the request's sandbox when it has one (Landlock checks
    /// at open time; blocks on the open file need no further check).
    pub async fn open(
        self,
        params: OpenParams,
        confinement: Option<Confinement>,
        claim: Claim,
    ) -> Result<(), io::Error> {
        self.turn.wait().await;
        let path = params.path.into_path();
        let opened = claim
            .run(confinement, move || match params.mode {
                OpenMode::Read => open_regular(&path, true).map(|(file, _)| (file, None)),
                OpenMode::Replace => {
                    Replacement::start(&path, true).map(|(r, file)| (file, Some(r)))
                }
            })
            .await;
        let mut state = lock(&self.handle.state);
        match opened {
            Ok((file, replacement)) if matches!(*state, HandleState::Opening) => {
                *state = HandleState::Open(Arc::new(OpenFile {
                    file,
                    replacement: Mutex::new(replacement),
                }));
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(err) => {
                *state = HandleState::Closed;
                drop(state);
                self.handles.forget(&self.id, &self.handle);
                Err(err)
            }
        }
    }

    pub async fn read_block(
        self,
        offset: u64,
        len: usize,
        claim: Claim,
    ) -> Result<ReadBlock, io::Error> {
        self.turn.wait().await;
        let file = self.open_file()?;
        let block = claim
            .run(None, move || read_at(&file.file, offset, len))
            .await?;
        if block.eof {
            *lock(&self.handle.state) = HandleState::Closed;
            self.handles.forget(&self.id, &self.handle);
        }
        Ok(block)
    }

    pub async fn write_block(
        self,
        offset: u64,
        bytes: Vec<u8>,
        claim: Claim,
    ) -> Result<(), io::Error> {
        self.turn.wait().await;
        let file = self.open_file()?;
        claim
            .run(None, move || file.file.write_all_at(&bytes, offset))
            .await
    }

    /// Close after the earlier operations; a `replace` handle's new content goes in place.
    pub async fn close(self, claim: Claim) -> Result<(), io::Error> {
        self.turn.wait().await;
        let state = std::mem::replace(&mut *lock(&self.handle.state), HandleState::Closed);
        let HandleState::Open(file) = state else {
            return Ok(());
        };
        let replacement = lock(&file.replacement).take();
        drop(file);
        match replacement {
            Some(replacement) => claim.run(None, move || replacement.commit()).await,
            None => Ok(()),
        }
    }

    fn open_file(&self) -> Result<Arc<OpenFile>, io::Error> {
        match &*lock(&self.handle.state) {
            HandleState::Open(file) => Ok(Arc::clone(file)),
            HandleState::Opening | HandleState::Closed => Err(unknown_io(&self.id)),
        }
    }
}

fn check_id(handle_id: &str) -> Result<(), RpcError> {
    if handle_id.len() > MAX_HANDLE_ID_BYTES {
        return Err(RpcError::invalid_request(format!(
            "file handle ID must not exceed {MAX_HANDLE_ID_BYTES} bytes"
        )));
    }
    Ok(())
}

fn unknown(handle_id: &str) -> RpcError {
    RpcError::not_found(format!("unknown file handle `{handle_id}`"))
}

fn unknown_io(handle_id: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("unknown file handle `{handle_id}`"),
    )
}

/// Up to `len` bytes at `offset`; `eof` when fewer were left.
fn read_at(file: &File, offset: u64, len: usize) -> io::Result<ReadBlock> {
    let mut bytes = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let at = offset.checked_add(filled as u64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "file read offset overflowed")
        })?;
        match file.read_at(&mut bytes[filled..], at) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    bytes.truncate(filled);
    Ok(ReadBlock {
        eof: filled < len,
        bytes,
    })
}
