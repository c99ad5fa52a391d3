//! Where a follower keeps its place between runs.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::follow::BoxError;

/// Persists the cursor of the last message the consumer has fully
/// processed. `save` is called after the consumer returned from handling
/// that message; `clear` when the cursor became useless (`OUT_OF_RANGE`).
#[async_trait]
pub trait CursorStore: Send {
    async fn load(&mut self) -> Result<Option<String>, BoxError>;
    async fn save(&mut self, cursor: &str) -> Result<(), BoxError>;
    async fn clear(&mut self) -> Result<(), BoxError>;
}

/// Keeps the cursor in memory only: resumes across disconnects, not across
/// restarts of the process.
#[derive(Debug, Default)]
pub struct MemoryCursor(pub Option<String>);

#[async_trait]
impl CursorStore for MemoryCursor {
    async fn load(&mut self) -> Result<Option<String>, BoxError> {
        Ok(self.0.clone())
    }
    async fn save(&mut self, cursor: &str) -> Result<(), BoxError> {
        self.0 = Some(cursor.to_owned());
        Ok(())
    }
    async fn clear(&mut self) -> Result<(), BoxError> {
        self.0 = None;
        Ok(())
    }
}

/// Keeps the cursor in a file, replaced atomically (write a temporary file,
/// flush it to disk, rename it over the old one), so a crash leaves either
/// the old cursor or the new one, never a torn one.
#[derive(Debug, Clone)]
pub struct FileCursor {
    path: PathBuf,
}

impl FileCursor {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn write_atomically(&self, contents: &str) -> std::io::Result<()> {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The rename itself must survive a power loss too.
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[async_trait]
impl CursorStore for FileCursor {
    async fn load(&mut self) -> Result<Option<String>, BoxError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|c| !c.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    async fn save(&mut self, cursor: &str) -> Result<(), BoxError> {
        let this = self.clone();
        let line = format!("{cursor}\n");
        tokio::task::spawn_blocking(move || this.write_atomically(&line)).await??;
        Ok(())
    }
    async fn clear(&mut self) -> Result<(), BoxError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_cursor_survives_reopening_and_clears() {
        let dir = std::env::temp_dir().join(format!("roster-cursor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cursor");
        let mut store = FileCursor::new(&path);
        assert_eq!(store.load().await.unwrap(), None);
        store.save("c1").await.unwrap();
        store.save("c2").await.unwrap();
        assert_eq!(
            FileCursor::new(&path).load().await.unwrap().as_deref(),
            Some("c2")
        );
        store.clear().await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
