//! The process layer, above `rpc`: which process each notification belongs to (`routes`),
//! each process's ordered log (`ordered`), the replay history and the subscribers that walk
//! it (`history`, `stream`), the one repair algorithm both use (`rebuild`) and the one bound
//! on what they keep (`bounds`), the completion's head and tail (`output`), held-output
//! acknowledgements (`acks`), the one state a process's readers share (`shared`), and the
//! same routing for named-shell output (`shell_output`). `dispatch` is what the RPC layer
//! calls on the reader task.

mod acks;
mod bounds;
mod dispatch;
mod history;
mod ordered;
mod output;
mod rebuild;
mod routes;
mod shared;
pub(crate) mod shell_output;
mod stream;

pub(crate) use routes::{HandleGuard, Processes};
pub(crate) use shared::ProcessShared;
pub use stream::EventStream;

#[cfg(feature = "testing")]
pub use dispatch::{decode_binary_output, decode_notification, decode_output_message};
#[cfg(feature = "testing")]
pub use history::{History, fill_lag};
#[cfg(feature = "testing")]
pub use ordered::{Incoming, OrderedLog, Repair};
