//! The appliance's model store: installed, verified packages and which of them are active.
//!
//! # Layout (`models.dir` of the configuration)
//! * `packages/<name>/<version>/` — an installed package: a verified copy (files mode 0444),
//!   never changed after it appears (one rename from a staging folder);
//! * `active.json` — [`StoreState`]: the active model per role, a generation counter and the
//!   earlier active sets (for `rollback`), replaced in one rename (`fsio::write_atomic`);
//! * `.lock` — held (flock) by every command that changes the store;
//! * `.nephrod-tmp-*` — staging folders and files of an interrupted command, removed by the
//!   next command that takes the lock.
//!
//! # Invariants
//! * What is active is exactly what `active.json` names: activation, rollback and removal
//!   change the store by replacing that one file, so a crash (kill -9) at any step leaves the
//!   old or the new active set, never a mix.
//! * Only packages whose signature verified under a trusted key, whose files all matched the
//!   signed hashes, which loaded, and whose self-check on the built-in phantom stayed within
//!   bounds reach `packages/` — and only those can be activated.
//! * The active versions and the rollback target (the newest history entry) cannot be removed.
//! * Readers (the daemon) need no lock: they read `active.json` once and open the packages it
//!   names, re-checking their files against the manifest's hashes.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Backend;
use crate::failpoint;
use crate::fsio;
use crate::models::loaded::Role;
use crate::models::package::{
    load_and_self_check, read_installed, verify_package, PackageError, PackageManifest,
    MANIFEST_TOML, SIGNATURE_FILE,
};
use crate::models::signing::PublicKey;

pub const STATE_FILE: &str = "active.json";
pub const PACKAGES_DIR: &str = "packages";
const LOCK_FILE: &str = ".lock";
const SCHEMA: &str = "nephrod.model-store";
const SCHEMA_VERSION: u32 = 1;
/// Earlier active sets kept for rollback.
pub const HISTORY_MAX: usize = 16;

/// One active model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveModel {
    pub name: String,
    pub version: String,
    /// SHA-256 of the package's manifest.toml at install (identifies every file).
    pub manifest_sha256: String,
}

impl ActiveModel {
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// An earlier active set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub active: BTreeMap<Role, ActiveModel>,
    /// When it stopped being active (UTC, RFC 3339).
    pub replaced_utc: String,
}

/// `active.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreState {
    pub schema: String,
    pub schema_version: u32,
    /// Incremented by every change of the active set.
    pub generation: u64,
    pub active: BTreeMap<Role, ActiveModel>,
    /// Oldest first.
    pub history: Vec<HistoryEntry>,
}

impl Default for StoreState {
    fn default() -> Self {
        Self {
            schema: SCHEMA.into(),
            schema_version: SCHEMA_VERSION,
            generation: 0,
            active: BTreeMap::new(),
            history: Vec::new(),
        }
    }
}

fn holds(set: &BTreeMap<Role, ActiveModel>, name: &str, version: &str) -> bool {
    set.values().any(|m| m.name == name && m.version == version)
}

/// The state transitions (pure; [`Store`] checks the packages and writes the result).
impl StoreState {
    /// `model` active for `role`: the current set goes to the history (unless empty; at most
    /// [`HISTORY_MAX`] kept) and the generation advances. Activating what is already active
    /// changes nothing. Returns the new state and the model it replaced.
    pub fn activated(
        &self,
        role: Role,
        model: ActiveModel,
        now_utc: &str,
    ) -> (StoreState, Option<ActiveModel>) {
        let mut next = self.clone();
        if next.active.get(&role) == Some(&model) {
            return (next, Some(model));
        }
        if !next.active.is_empty() {
            next.history.push(HistoryEntry {
                active: next.active.clone(),
                replaced_utc: now_utc.into(),
            });
        }
        if next.history.len() > HISTORY_MAX {
            next.history.remove(0);
        }
        let previous = next.active.insert(role, model);
        next.generation += 1;
        (next, previous)
    }

    /// The newest history entry active again (and no longer in the history).
    pub fn rolled_back(&self) -> Result<StoreState, StoreError> {
        let mut next = self.clone();
        let entry = next.history.pop().ok_or(StoreError::NoHistory)?;
        next.active = entry.active;
        next.generation += 1;
        Ok(next)
    }

    /// The state once `name@version` is deleted: refused while it is active or the rollback
    /// target; older history entries naming it are dropped (nothing could restore them).
    pub fn without(&self, name: &str, version: &str) -> Result<StoreState, StoreError> {
        let id = format!("{name}@{version}");
        if holds(&self.active, name, version) {
            return Err(StoreError::InUse { id, why: "active" });
        }
        if self
            .history
            .last()
            .is_some_and(|h| holds(&h.active, name, version))
        {
            return Err(StoreError::InUse {
                id,
                why: "the rollback target",
            });
        }
        let mut next = self.clone();
        next.history.retain(|h| !holds(&h.active, name, version));
        Ok(next)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: another nephrod models command is changing the store; try again when it has finished")]
    Busy { path: PathBuf },
    #[error("{path}: unreadable store state: {message}")]
    State { path: PathBuf, message: String },
    #[error("refused: {0}")]
    Package(#[from] PackageError),
    #[error("refused: {0}")]
    Archive(#[from] crate::models::archive::ArchiveError),
    #[error("{id} is already installed with different content (versions are immutable: sign the new model with a new version)")]
    VersionConflict { id: String },
    #[error("{id} is not installed (see nephrod models list)")]
    NotInstalled { id: String },
    #[error("installed package {id} is damaged: {source}")]
    Damaged {
        id: String,
        #[source]
        source: PackageError,
    },
    #[error("{what}: expected name@version")]
    BadId { what: String },
    #[error("nothing to roll back to (no earlier active set is recorded)")]
    NoHistory,
    #[error("{id} is {why} and cannot be removed")]
    InUse { id: String, why: &'static str },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn now_utc() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::models::bundle::rfc3339_utc(now)
}

/// `name@version` → (name, version).
pub fn parse_id(s: &str) -> Result<(String, String), StoreError> {
    match s.split_once('@') {
        Some((n, v))
            if crate::models::package::valid_token(n) && crate::models::package::valid_token(v) =>
        {
            Ok((n.to_string(), v.to_string()))
        }
        _ => Err(StoreError::BadId {
            what: s.to_string(),
        }),
    }
}

/// An installed package as `list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub version: String,
    /// `None` when the manifest is unreadable (shown as damaged).
    pub manifest: Option<PackageManifest>,
    pub active: bool,
    pub rollback_target: bool,
}

/// What `install` did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub manifest: PackageManifest,
    pub manifest_sha256: String,
    pub key_id: String,
    /// The self-check summary; `None` when the same package was already installed.
    pub self_check: Option<String>,
}

/// A model store rooted at a folder.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// The store lock, released on drop.
pub struct StoreLock {
    _file: File,
}

impl Store {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// Whether `root` holds a store (a state file or a packages folder).
    pub fn exists(root: &Path) -> bool {
        root.join(STATE_FILE).is_file() || root.join(PACKAGES_DIR).is_dir()
    }

    pub fn package_dir(&self, name: &str, version: &str) -> PathBuf {
        self.root.join(PACKAGES_DIR).join(name).join(version)
    }

    fn state_path(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// Takes the store lock (creating the store folders) and removes what interrupted commands
    /// left behind.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let packages = self.root.join(PACKAGES_DIR);
        std::fs::create_dir_all(&packages).map_err(io(&packages))?;
        let path = self.root.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Busy { path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        self.remove_temporaries()?;
        Ok(StoreLock { _file: file })
    }

    fn remove_temporaries(&self) -> Result<(), StoreError> {
        for dir in [self.root.clone(), self.root.join(PACKAGES_DIR)] {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !fsio::is_temporary(&name) {
                    continue;
                }
                let p = entry.path();
                let r = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(io(&p))?;
                tracing::info!(path = %p.display(), "removed what an interrupted models command left");
            }
        }
        Ok(())
    }

    /// The current state (empty when nothing was ever activated).
    pub fn state(&self) -> Result<StoreState, StoreError> {
        let path = self.state_path();
        let bytes = match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreState::default()),
            other => other.map_err(io(&path))?,
        };
        let state: StoreState = serde_json::from_slice(&bytes).map_err(|e| StoreError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if state.schema != SCHEMA || state.schema_version != SCHEMA_VERSION {
            return Err(StoreError::State {
                path,
                message: format!(
                    "schema {} version {}, this build reads {SCHEMA} version {SCHEMA_VERSION}",
                    state.schema, state.schema_version
                ),
            });
        }
        Ok(state)
    }

    /// Replaces the state in one rename (failpoints `store.state.before_rename`,
    /// `store.state.after_rename`).
    fn write_state(&self, state: &StoreState) -> Result<(), StoreError> {
        let path = self.state_path();
        let mut text = serde_json::to_string_pretty(state).map_err(|e| StoreError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        text.push('\n');
        fsio::write_atomic_with(&path, text.as_bytes(), || {
            failpoint::hit("store.state.before_rename")
        })
        .map_err(io(&path))?;
        failpoint::hit("store.state.after_rename").map_err(io(&path))
    }

    /// Verifies `source` (a package folder or `.tar` archive, see [`crate::models::archive`];
    /// signature by one of `trusted`, hashes), copies it into the store,
    /// verifies the copy, loads it and runs its self-check with `backend`, then makes it
    /// appear under `packages/` in one rename. Nothing is activated.
    pub fn install(
        &self,
        source: &Path,
        trusted: &[PublicKey],
        backend: &dyn Backend,
    ) -> Result<Installed, StoreError> {
        let _lock = self.lock()?;
        // An archive is unpacked into the store's staging area first (removed on return; a
        // kill leaves a staging folder the next command removes).
        let unpacked = if crate::models::archive::is_archive(source) {
            let dir = fsio::temp_sibling(&self.root.join("unpack"));
            let unpacked = crate::models::archive::Unpacked::new(source, dir)?;
            failpoint::hit("install.unpacked").map_err(io(&unpacked.package))?;
            Some(unpacked)
        } else {
            None
        };
        let source = unpacked.as_ref().map_or(source, |u| u.package.as_path());
        let pkg = verify_package(source, trusted)?;
        let m = &pkg.manifest;
        let dest = self.package_dir(&m.name, &m.version);
        if dest.exists() {
            let (_, sha) = read_installed(&dest)
                .map_err(|source| StoreError::Damaged { id: m.id(), source })?;
            if sha == pkg.manifest_sha256 {
                return Ok(Installed {
                    manifest: pkg.manifest.clone(),
                    manifest_sha256: sha,
                    key_id: pkg.key_id.clone(),
                    self_check: None,
                });
            }
            return Err(StoreError::VersionConflict { id: m.id() });
        }
        let staging = fsio::temp_sibling(&self.root.join(format!("install-{}", m.id())));
        std::fs::create_dir(&staging).map_err(io(&staging))?;
        let result = self.install_staged(&pkg, &staging, trusted, backend, &dest);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    fn install_staged(
        &self,
        pkg: &crate::models::package::VerifiedPackage,
        staging: &Path,
        trusted: &[PublicKey],
        backend: &dyn Backend,
        dest: &Path,
    ) -> Result<Installed, StoreError> {
        let names = pkg
            .manifest
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain([MANIFEST_TOML, SIGNATURE_FILE]);
        for name in names {
            let to = staging.join(name);
            if let Some(parent) = to.parent().filter(|p| *p != staging) {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(pkg.dir.join(name), &to).map_err(io(&to))?;
            // Installed files are read-only, whatever modes the medium carried.
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o444))
                .map_err(io(&to))?;
            failpoint::hit("install.copy").map_err(io(&to))?;
        }
        fsio::sync_tree(staging).map_err(io(staging))?;
        // The copy is what will serve: verify it, not the source.
        let copy = verify_package(staging, trusted)?;
        if copy.manifest_sha256 != pkg.manifest_sha256 {
            return Err(StoreError::Io {
                path: staging.to_path_buf(),
                source: std::io::Error::other("the package changed while it was copied"),
            });
        }
        let (model, summary) = load_and_self_check(&copy, backend)?;
        drop(model);
        failpoint::hit("install.checked").map_err(io(staging))?;
        let parent = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        failpoint::hit("install.before_rename").map_err(io(staging))?;
        std::fs::rename(staging, dest).map_err(io(dest))?;
        fsio::sync_dir(parent).map_err(io(parent))?;
        failpoint::hit("install.after_rename").map_err(io(dest))?;
        Ok(Installed {
            manifest: copy.manifest,
            manifest_sha256: copy.manifest_sha256,
            key_id: copy.key_id,
            self_check: Some(summary),
        })
    }

    /// Re-checks an installed package's files; returns its manifest and manifest SHA-256.
    pub fn check_installed(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(PackageManifest, String), StoreError> {
        let id = format!("{name}@{version}");
        let dir = self.package_dir(name, version);
        if !dir.join(MANIFEST_TOML).exists() {
            return Err(StoreError::NotInstalled { id });
        }
        read_installed(&dir).map_err(|source| StoreError::Damaged { id, source })
    }

    /// Makes `name@version` the active model of its role (one rename of the state file).
    /// Returns the new state and the model it replaced, if any.
    pub fn activate(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(StoreState, Option<ActiveModel>), StoreError> {
        let _lock = self.lock()?;
        let (manifest, sha) = self.check_installed(name, version)?;
        crate::models::loaded::LoadedModel::open(&self.package_dir(name, version)).map_err(
            |e| StoreError::Damaged {
                id: manifest.id(),
                source: PackageError::Model {
                    dir: self.package_dir(name, version),
                    message: e.0,
                },
            },
        )?;
        let new = ActiveModel {
            name: name.into(),
            version: version.into(),
            manifest_sha256: sha,
        };
        let state = self.state()?;
        let (next, previous) = state.activated(manifest.role, new, &now_utc());
        if next != state {
            self.write_state(&next)?;
        }
        Ok((next, previous))
    }

    /// Restores the active set that the last activation replaced (and forgets it: a second
    /// rollback steps further back).
    pub fn rollback(&self) -> Result<StoreState, StoreError> {
        let _lock = self.lock()?;
        let state = self.state()?;
        let next = state.rolled_back()?;
        for m in next.active.values() {
            let (_, sha) = self.check_installed(&m.name, &m.version)?;
            if sha != m.manifest_sha256 {
                return Err(StoreError::VersionConflict { id: m.id() });
            }
        }
        self.write_state(&next)?;
        Ok(next)
    }

    /// Removes an installed version that is neither active nor the rollback target.
    pub fn remove(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let id = format!("{name}@{version}");
        let dir = self.package_dir(name, version);
        if !dir.is_dir() {
            return Err(StoreError::NotInstalled { id });
        }
        let state = self.state()?;
        let next = state.without(name, version)?;
        if next != state {
            self.write_state(&next)?;
        }
        // One rename makes it disappear; the deletion of the renamed folder may be interrupted.
        let doomed = fsio::temp_sibling(&self.root.join(format!("remove-{id}")));
        std::fs::rename(&dir, &doomed).map_err(io(&dir))?;
        fsio::sync_dir(dir.parent().unwrap_or(&self.root)).map_err(io(&dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io(&doomed))?;
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent); // only when empty
        }
        Ok(())
    }

    /// Every installed package, sorted by name and version.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let state = self.state()?;
        let packages = self.root.join(PACKAGES_DIR);
        let mut out = Vec::new();
        let Ok(names) = std::fs::read_dir(&packages) else {
            return Ok(out);
        };
        for n in names.flatten() {
            let name = n.file_name().to_string_lossy().into_owned();
            if fsio::is_temporary(&name) || !n.path().is_dir() {
                continue;
            }
            for v in std::fs::read_dir(n.path())
                .map_err(io(&n.path()))?
                .flatten()
            {
                let version = v.file_name().to_string_lossy().into_owned();
                let manifest = std::fs::read(v.path().join(MANIFEST_TOML))
                    .ok()
                    .and_then(|b| {
                        crate::models::package::parse_manifest(&v.path().join(MANIFEST_TOML), &b)
                            .ok()
                    });
                out.push(Listed {
                    active: holds(&state.active, &name, &version),
                    rollback_target: state
                        .history
                        .last()
                        .is_some_and(|h| holds(&h.active, &name, &version)),
                    name: name.clone(),
                    version,
                    manifest,
                });
            }
        }
        out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, version: &str) -> ActiveModel {
        ActiveModel {
            name: name.into(),
            version: version.into(),
            manifest_sha256: format!("{name}{version}"),
        }
    }

    fn seg(s: &StoreState) -> String {
        s.active[&Role::Segmentation].id()
    }

    #[test]
    fn activation_history_and_rollback() {
        let s0 = StoreState::default();
        let (s1, prev) = s0.activated(Role::Segmentation, m("seg", "1"), "t1");
        assert!(prev.is_none());
        assert!(
            s1.history.is_empty(),
            "an empty set is nothing to roll back to"
        );
        assert_eq!(s1.generation, 1);
        let (same, _) = s1.activated(Role::Segmentation, m("seg", "1"), "t");
        assert_eq!(same, s1);
        let (s2, _) = s1.activated(Role::Classification, m("cls", "1"), "t2");
        let (s3, prev) = s2.activated(Role::Segmentation, m("seg", "2"), "t3");
        assert_eq!(prev, Some(m("seg", "1")));
        assert_eq!(s3.generation, 3);
        // Rollback restores whole sets, newest first, then there is nothing left.
        let r1 = s3.rolled_back().unwrap();
        assert_eq!(r1.active, s2.active);
        assert_eq!(r1.generation, 4);
        let r2 = r1.rolled_back().unwrap();
        assert_eq!(r2.active, s1.active);
        assert!(matches!(r2.rolled_back(), Err(StoreError::NoHistory)));
    }

    #[test]
    fn history_is_bounded() {
        let mut s = StoreState::default();
        for v in 0..(HISTORY_MAX + 5) {
            s = s
                .activated(Role::Segmentation, m("seg", &v.to_string()), "t")
                .0;
        }
        assert_eq!(s.history.len(), HISTORY_MAX);
        let newest_replaced = (HISTORY_MAX + 3).to_string();
        assert_eq!(
            s.history.last().unwrap().active[&Role::Segmentation].version,
            newest_replaced
        );
    }

    #[test]
    fn removal_spares_the_active_and_the_rollback_target_and_prunes_the_rest() {
        let mut s = StoreState::default();
        for v in ["1", "2", "3"] {
            s = s.activated(Role::Segmentation, m("seg", v), "t").0;
        }
        assert_eq!(seg(&s), "seg@3");
        assert!(matches!(
            s.without("seg", "3"),
            Err(StoreError::InUse { why: "active", .. })
        ));
        assert!(matches!(
            s.without("seg", "2"),
            Err(StoreError::InUse {
                why: "the rollback target",
                ..
            })
        ));
        let pruned = s.without("seg", "1").unwrap();
        assert_eq!(pruned.history.len(), 1);
        assert_eq!(seg(&pruned.rolled_back().unwrap()), "seg@2");
        // Something never active changes nothing.
        assert_eq!(s.without("other", "1").unwrap(), s);
    }
}
