//! `environment/status` (`environment/info` is a stored value, see `crate::environment`).

use super::Reply;
use rexec_protocol::RpcError;
use rexec_protocol::environment::EnvironmentStatus;

pub fn status() -> Result<Reply, RpcError> {
    Reply::new(&EnvironmentStatus {
        status: "ready".to_owned(),
    })
}
