//! Hashes one password over and over on N threads for a fixed time, the
//! fastest way the argon2 crate allows (random salt, argon2id, each thread
//! reusing one work buffer, as the service's hashing threads do), and prints
//! one JSON line: {"threads":N,"seconds":S,"hashes":H,"hashes_per_s":R}.
//!
//! Usage: argon2-rate THREADS SECONDS MEMORY_KIB ITERATIONS PARALLELISM

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Block, Params, Version};

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("every argument is a whole number"))
        .collect();
    let [threads, seconds, memory_kib, iterations, parallelism] = args[..] else {
        eprintln!("usage: argon2-rate THREADS SECONDS MEMORY_KIB ITERATIONS PARALLELISM");
        std::process::exit(2);
    };
    let params = Params::new(
        memory_kib as u32,
        iterations as u32,
        parallelism as u32,
        None,
    )
    .expect("valid argon2 parameters");
    let stop = Arc::new(AtomicBool::new(false));
    let hashes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, hashes, params) = (stop.clone(), hashes.clone(), params.clone());
            std::thread::spawn(move || {
                let mut memory = vec![Block::new(); params.block_count()];
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                let mut salt_bytes = [0u8; 64];
                let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
                while !stop.load(Ordering::Relaxed) {
                    let salt = SaltString::generate(&mut OsRng);
                    let salt = salt
                        .as_salt()
                        .decode_b64(&mut salt_bytes)
                        .expect("a fresh salt decodes");
                    argon2
                        .hash_password_into_with_memory(
                            b"correct horse battery staple",
                            salt,
                            &mut output,
                            &mut memory,
                        )
                        .expect("argon2 hashes");
                    std::hint::black_box(&output);
                    hashes.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    // Counting hashes that finish after the deadline with the time they took
    // keeps the rate honest.
    for worker in workers {
        worker.join().expect("worker finished");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = hashes.load(Ordering::Relaxed);
    println!(
        "{{\"threads\":{threads},\"seconds\":{elapsed:.3},\"hashes\":{total},\"hashes_per_s\":{:.2}}}",
        total as f64 / elapsed
    );
}
