//! (arrives with issue 5; see mod.rs)
