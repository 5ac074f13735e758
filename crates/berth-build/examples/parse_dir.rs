//! Checks the line level against a directory of `<name>/Dockerfile` + `<name>/result`
//! golden pairs in BuildKit's dump format (e.g. a checkout of BuildKit's parser testfiles).
fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("a directory of golden pairs");
    let (mut ok, mut bad) = (0, 0);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(p.join("Dockerfile")) else {
            continue;
        };
        let Ok(want) = std::fs::read_to_string(p.join("result")) else {
            continue;
        };
        match berth_build::parser::dump(&text) {
            Ok(got) if got.trim_end() == want.trim_end() => ok += 1,
            Ok(got) => {
                bad += 1;
                println!("DIFF {}", p.display());
                for (g, w) in got.lines().zip(want.lines()) {
                    if g != w {
                        println!("  got:  {g}\n  want: {w}");
                    }
                }
            }
            Err(e) => {
                bad += 1;
                println!("ERR  {}: {e}", p.display());
            }
        }
    }
    println!("{ok} same, {bad} different");
}
