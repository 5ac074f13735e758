//! Times writing a context tar (what `berth build` streams) for a directory.
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("a context directory"));
    let (ignore, _) = berth_build::dockerignore::Dockerignore::load(&dir, None).unwrap();
    let start = std::time::Instant::now();
    let mut out = std::io::sink();
    let n =
        berth_build::context::write_tar(&dir, &ignore, &[".dockerignore", "Dockerfile"], &mut out)
            .unwrap();
    println!("{n} entries in {:?}", start.elapsed());
}
