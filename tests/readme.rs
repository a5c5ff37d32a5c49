//! The README's walkthrough config is one `fulcrum check` accepts, and check says of it what the
//! README shows: a front door that cannot drift from the binary.

mod support;

/// The README's text.
const README: &str = include_str!("../README.md");

/// The first ```toml block after `marker` in the README.
fn toml_block_after(marker: &str) -> &'static str {
    let from = README
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let start = README[from..].find("```toml\n").expect("a toml block") + from + "```toml\n".len();
    let end = README[start..].find("```").expect("the block's end") + start;
    &README[start..end]
}

/// The output line the README shows for `$ fulcrum check fulcrum.toml`.
fn check_line_shown() -> &'static str {
    let at = README
        .find("$ fulcrum check fulcrum.toml\n")
        .expect("README shows a check run");
    let rest = &README[at..];
    rest.lines().nth(1).expect("its output line")
}

#[test]
fn the_walkthrough_config_passes_check_as_the_readme_shows() {
    let config = toml_block_after("Write `fulcrum.toml`");
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    // The certificates step 3 makes, one per site, with the site's name as its SAN.
    for site in ["www", "api"] {
        let key = rcgen::generate_simple_self_signed(vec![format!("{site}.example.test")]).unwrap();
        std::fs::write(certs.join(format!("{site}.pem")), key.cert.pem()).unwrap();
        std::fs::write(
            certs.join(format!("{site}.key")),
            key.key_pair.serialize_pem(),
        )
        .unwrap();
    }
    let path = dir.path().join("fulcrum.toml");
    std::fs::write(&path, config).unwrap();
    let (ok, out, err) = support::check_file(&path, &[]);
    assert!(ok, "check refused the README's config:\n{out}{err}");
    let shown = check_line_shown().replacen("fulcrum.toml", &path.display().to_string(), 1);
    assert!(
        out.lines().any(|l| l == shown),
        "check printed\n{out}\nnot the README's line\n{shown}"
    );
}
