#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| roster_scim_fuzz::json_unique(data));
