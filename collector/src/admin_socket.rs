//! Local admin socket of a running collector: one JSON request line in, one
//! JSON answer line out. Access is guarded by the socket file's permissions
//! (owner only), like the database directory itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::admin::{Admin, AdminError, AdminRequest};

/// Name of the socket inside the data directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Path of the admin socket for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Reply {
    Ok { value: serde_json::Value },
    Error { message: String },
}

/// Binds the socket (replacing a stale one) and serves requests until dropped.
pub fn serve(path: &Path, admin: Admin) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let admin = admin.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, admin).await {
                    tracing::warn!("admin socket: {e}");
                }
            });
        }
    }))
}

async fn answer(stream: UnixStream, admin: Admin) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    BufReader::new(r).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<AdminRequest>(&line) {
        Err(e) => Reply::Error {
            message: format!("bad request: {e}"),
        },
        Ok(req) => match tokio::task::spawn_blocking(move || admin.handle(req)).await {
            Ok(Ok(value)) => Reply::Ok { value },
            Ok(Err(e)) => Reply::Error {
                message: e.to_string(),
            },
            Err(e) => Reply::Error {
                message: format!("internal error: {e}"),
            },
        },
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    w.write_all(&out).await?;
    w.shutdown().await
}

/// Sends one request to a running collector. `Ok(None)` when nothing listens.
pub async fn request(
    path: &Path,
    req: &AdminRequest,
) -> Result<Option<serde_json::Value>, AdminError> {
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(AdminError::Socket(format!("{}: {e}", path.display()))),
    };
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(|e| AdminError::Socket(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line)
        .await
        .map_err(|e| AdminError::Socket(e.to_string()))?;
    let mut answer = String::new();
    BufReader::new(r)
        .read_line(&mut answer)
        .await
        .map_err(|e| AdminError::Socket(e.to_string()))?;
    match serde_json::from_str::<Reply>(&answer) {
        Ok(Reply::Ok { value }) => Ok(Some(value)),
        Ok(Reply::Error { message }) => Err(AdminError::Refused(message)),
        Err(e) => Err(AdminError::Socket(format!("unreadable answer: {e}"))),
    }
}
