#![no_main]

// As in the broker: allocations for lengths read off the wire are reserved lazily.
#[global_allocator]
static ALLOC: keel_server::alloc::LazyLargeAlloc = keel_server::alloc::LazyLargeAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| keel_fuzz::targets::record_batch(data));
