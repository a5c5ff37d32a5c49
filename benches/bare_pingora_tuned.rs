//! `bare_pingora.rs` with the engine settings fulcrum uses: mimalloc as the allocator and no L4
//! read buffer on the listener. The reference for "what fulcrum adds on top of the same engine".
//!
//!   bare_pingora_tuned LISTEN BACKEND [BACKEND ...]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bare_pingora.rs"]
mod bare;

fn main() {
    bare::run(false);
}
