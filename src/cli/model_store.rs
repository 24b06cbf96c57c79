//! `nephrod models list|verify|install|activate|rollback|remove|keygen|sign`: the signed model
//! store from the command line (field technician and vendor).
//!
//! The store folder and the trusted keys come from the daemon's configuration (`--config`,
//! default [`DEFAULT_CONFIG`] when it exists: `models.dir`, `models.trusted_keys`);
//! `--store DIR` overrides the folder, `--trust KEY.pub` adds keys.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::daemon::config::Config;
use crate::engine::select_backend;
use crate::models::archive::{is_archive, Unpacked};
use crate::models::package::{sign_package, verify_package, SignRequest};
use crate::models::signing::{PublicKey, SecretKey};
use crate::models::store::{parse_id, Store, StoreState};

/// The configuration file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG: &str = "/etc/nephrod/nephrod.toml";

#[derive(Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// The daemon's configuration (models.dir, models.trusted_keys, models.device).
    /// Default: /etc/nephrod/nephrod.toml when it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The model store folder (default: models.dir of the configuration).
    #[arg(long)]
    pub store: Option<PathBuf>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// A trusted public key (KEY.pub), besides the configuration's models.trusted_keys.
    /// Repeatable.
    #[arg(long = "trust")]
    pub trust: Vec<PathBuf>,
}

fn load_config(explicit: Option<&Path>) -> anyhow::Result<Option<Config>> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(None),
    };
    Config::load(&path)
        .map(Some)
        .with_context(|| format!("reading the configuration {}", path.display()))
}

fn store_of(a: &StoreArgs) -> anyhow::Result<(Store, Option<Config>)> {
    let cfg = load_config(a.config.as_deref())?;
    let root = match (&a.store, &cfg) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => c.models.dir.clone(),
        (None, None) => anyhow::bail!(
            "no model store: pass --store DIR or --config FILE (none at {DEFAULT_CONFIG})"
        ),
    };
    Ok((Store::new(&root), cfg))
}

fn trusted_keys(a: &TrustArgs, cfg: Option<&Config>) -> anyhow::Result<Vec<PublicKey>> {
    let paths = a
        .trust
        .iter()
        .chain(cfg.iter().flat_map(|c| c.models.trusted_keys.iter()));
    paths
        .map(|p| PublicKey::read(p).with_context(|| format!("trusted key {}", p.display())))
        .collect()
}

pub fn run_verify(
    bundle: &Path,
    config: Option<&Path>,
    trust: &TrustArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config)?;
    let keys = trusted_keys(trust, cfg.as_ref())?;
    // An archive is unpacked into a private temporary folder ($TMPDIR), removed on return.
    let unpacked = if is_archive(bundle) {
        let dir = std::env::temp_dir().join(format!(
            "nephrod-verify-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        Some(Unpacked::new(bundle, dir).context("refused")?)
    } else {
        None
    };
    let dir = unpacked.as_ref().map_or(bundle, |u| u.package.as_path());
    let pkg = verify_package(dir, &keys).context("refused")?;
    crate::models::loaded::LoadedModel::open(dir)
        .map_err(|e| anyhow::anyhow!("refused: the model does not load: {}", e.0))?;
    let m = &pkg.manifest;
    println!(
        "{}: OK — {} ({}), signed by trusted key {}, {} files match their SHA-256, the model loads",
        bundle.display(),
        m.id(),
        m.role.as_str(),
        pkg.key_id,
        m.files.len()
    );
    print_manifest(m, &pkg.manifest_sha256);
    Ok(ExitCode::SUCCESS)
}

fn print_manifest(m: &crate::models::package::PackageManifest, sha: &str) {
    println!("manifest     SHA-256 {sha}, created {}", m.created_utc);
    println!(
        "architecture {} ({} parameters)",
        m.architecture.description, m.architecture.parameters
    );
    println!("preprocess   {}", m.preprocessing.description);
    println!("labels       {}", m.labels.join(", "));
    println!("training     {}", m.training.summary);
}

pub fn run_install(
    bundle: &Path,
    store: &StoreArgs,
    trust: &TrustArgs,
    activate: bool,
    cpu: bool,
) -> anyhow::Result<ExitCode> {
    let (st, cfg) = store_of(store)?;
    let keys = trusted_keys(trust, cfg.as_ref())?;
    let gpu = !cpu && cfg.as_ref().is_some_and(|c| c.models.device == "cuda");
    let backend = select_backend(gpu);
    eprintln!("verifying {} …", bundle.display());
    let done = st
        .install(bundle, &keys, backend.as_ref())
        .with_context(|| format!("installing {}", bundle.display()))?;
    let id = done.manifest.id();
    match &done.self_check {
        Some(summary) => println!(
            "installed {id} ({}; signed by {}; manifest SHA-256 {})\nself-check passed: {summary}",
            done.manifest.role.as_str(),
            done.key_id,
            done.manifest_sha256
        ),
        None => println!("{id} is already installed (identical manifest SHA-256)"),
    }
    if activate {
        return run_activate(&id, store);
    }
    println!("not active yet: nephrod models activate {id}");
    Ok(ExitCode::SUCCESS)
}

fn print_active(state: &StoreState) {
    for (role, m) in &state.active {
        println!("active {:<15} {}", role.as_str(), m.id());
    }
}

pub fn run_activate(id: &str, store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let (st, _) = store_of(store)?;
    let (name, version) = parse_id(id)?;
    let (state, previous) = st
        .activate(&name, &version)
        .with_context(|| format!("activating {id}"))?;
    match previous {
        Some(p) if p.name == name && p.version == version => {
            println!("{id} was already active");
        }
        Some(p) => println!(
            "activated {id} (generation {}); replaced {} (nephrod models rollback restores it)",
            state.generation,
            p.id()
        ),
        None => println!("activated {id} (generation {})", state.generation),
    }
    print_active(&state);
    Ok(ExitCode::SUCCESS)
}

pub fn run_rollback(store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let (st, _) = store_of(store)?;
    let state = st.rollback().context("rolling back")?;
    println!("rolled back (generation {})", state.generation);
    print_active(&state);
    Ok(ExitCode::SUCCESS)
}

pub fn run_remove(id: &str, store: &StoreArgs) -> anyhow::Result<ExitCode> {
    let (st, _) = store_of(store)?;
    let (name, version) = parse_id(id)?;
    st.remove(&name, &version)
        .with_context(|| format!("removing {id}"))?;
    println!("removed {id}");
    Ok(ExitCode::SUCCESS)
}

pub fn run_list(store: &StoreArgs, trust: &TrustArgs, check: bool) -> anyhow::Result<ExitCode> {
    let (st, cfg) = store_of(store)?;
    let keys = if check {
        trusted_keys(trust, cfg.as_ref())?
    } else {
        Vec::new()
    };
    let listed = st.list()?;
    if listed.is_empty() {
        println!("no models installed in {}", st.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36} {:<15} {:<9} {:<21} TRAINING",
        "NAME@VERSION", "ROLE", "STATUS", "CREATED"
    );
    let (mut damaged, mut untrusted) = (0, 0);
    for l in &listed {
        let id = format!("{}@{}", l.name, l.version);
        let status = match (l.active, l.rollback_target) {
            (true, _) => "active",
            (false, true) => "previous",
            _ => "",
        };
        match &l.manifest {
            Some(m) => println!(
                "{id:<36} {:<15} {status:<9} {:<21} {}",
                m.role.as_str(),
                m.created_utc,
                m.training.summary
            ),
            None => println!("{id:<36} {:<15} {status:<9} (manifest unreadable)", "?"),
        }
        if !check {
            continue;
        }
        match st.check_installed(&l.name, &l.version) {
            Ok((_, sha)) => {
                println!("    intact: every file matches manifest.toml (SHA-256 {sha})")
            }
            Err(e) => {
                damaged += 1;
                println!("    DAMAGED: {e}");
                continue;
            }
        }
        if keys.is_empty() {
            continue;
        }
        match verify_package(&st.package_dir(&l.name, &l.version), &keys) {
            Ok(v) => println!("    signed by trusted key {}", v.key_id),
            Err(e) => {
                // Revoked (or never configured) signer: `nephrod serve` refuses it.
                untrusted += usize::from(l.active);
                println!(
                    "    NOT TRUSTED{}: {e}",
                    if l.active {
                        " (active: nephrod serve will refuse to start)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    if check && keys.is_empty() {
        println!("(signatures not checked: no trusted keys in the configuration or --trust)");
    }
    let problems: Vec<String> = [
        (damaged, "installed package(s) damaged"),
        (untrusted, "active package(s) not signed by a trusted key"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_keygen(out: &Path, comment: &str) -> anyhow::Result<ExitCode> {
    let key = SecretKey::generate()?;
    let public = key
        .write_pair(out, comment)
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} (secret: keep it offline) and {} (key id {})",
        out.display(),
        public.display(),
        key.public().id()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_sign(bundle: &Path, key: &Path, req: &SignRequest) -> anyhow::Result<ExitCode> {
    let secret = SecretKey::read(key)?;
    let backend = select_backend(false);
    let (m, sha) = sign_package(bundle, &secret, req, backend.as_ref())
        .with_context(|| format!("signing {}", bundle.display()))?;
    println!(
        "signed {} as {} ({}) with key {}; {} files",
        bundle.display(),
        m.id(),
        m.role.as_str(),
        secret.public().id(),
        m.files.len()
    );
    print_manifest(&m, &sha);
    Ok(ExitCode::SUCCESS)
}
