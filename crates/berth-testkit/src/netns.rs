//! (filled by its adapter's issue)
