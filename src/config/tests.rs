use super::*;

const EXAMPLE: &str = include_str!("../../muster.example.toml");

#[test]
fn the_example_file_is_valid_and_is_the_default() {
    let example = Config::parse(EXAMPLE).unwrap();
    example.settings().unwrap();
    let mut default = Config::default();
    // The example spells out a catch-all rule with the default values.
    default.namespaces[0].services = example.namespaces[0].services.clone();
    assert_eq!(example, default);
}

#[test]
fn printed_config_parses_back_unchanged() {
    let mut config = Config::parse(EXAMPLE).unwrap();
    config
        .sources
        .file
        .push(crate::sources::file::FileSourceConfig {
            path: "/tmp/static.toml".into(),
        });
    config
        .namespaces
        .push(NamespaceConfig::named("prod.example"));
    let printed = config.to_toml();
    assert_eq!(Config::parse(&printed).unwrap(), config, "{printed}");
}

#[test]
fn unknown_keys_are_named() {
    let error = Config::parse("[dns]\nlisten = []\nbogus = 1\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("bogus"), "{error}");
    let error = Config::parse("[[namespaces]]\nname = \"a\"\nttl = -1\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("ttl"), "{error}");
}

#[test]
fn validation_reports_every_problem() {
    let text = r#"
        [dns]
        listen = []
        max_udp_payload = 100
        [[namespaces]]
        name = "bad name"
        [[namespaces]]
        name = "ok"
        [[namespaces.services]]
        match = "[unclosed"
        [[namespaces]]
        name = "OK."
        [[sources.file]]
        path = "a"
        [[sources.file]]
        path = "a"
    "#;
    let Err(ConfigError::Invalid(problems)) = Config::parse(text).unwrap().settings() else {
        panic!("invalid config accepted");
    };
    let all = problems.join("\n");
    for expected in [
        "dns.listen",
        "max_udp_payload",
        "namespaces[0].name",
        "namespaces[1].services[0].match",
        "namespaces[2].name",
        "sources.file[1].path",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
}

#[test]
fn environment_overrides() {
    let mut config = Config::default();
    let env = |name: &str| match name {
        "MUSTER_DNS_LISTEN" => Some("127.0.0.1:53, [::1]:53".to_owned()),
        "MUSTER_HTTP_LISTEN" => Some("0.0.0.0:80".to_owned()),
        "MUSTER_DATA_DIR" => Some("/var/lib/muster".to_owned()),
        _ => None,
    };
    config.apply_env(env).unwrap();
    assert_eq!(config.dns.listen.len(), 2);
    assert_eq!(config.http.listen.port(), 80);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/muster"));
    let bad = |name: &str| (name == "MUSTER_HTTP_LISTEN").then(|| "nonsense".to_owned());
    assert!(Config::default().apply_env(bad).is_err());
}

#[test]
fn namespace_names_are_normalized() {
    let config = Config::parse("[[namespaces]]\nname = \"Svc.Example.COM.\"\n").unwrap();
    let settings = config.settings().unwrap().namespaces;
    assert_eq!(settings[0].name, "svc.example.com");
    assert_eq!(settings[0].nameserver, "ns.svc.example.com.");
}

#[test]
fn ecs_sources_are_validated_with_the_rest() {
    let text = r#"
        [[namespaces]]
        name = "internal"
        [[sources.ecs]]
        clusters = ["prod", "arn:aws:ecs:eu-west-1:1:cluster/dev"]
        namespace = "Internal."
        [[sources.ecs]]
        clusters = ["dev"]
        namespace = "elsewhere"
        reconcile_interval = "0s"
    "#;
    let config = Config::parse(text).unwrap();
    assert_eq!(config.sources.ecs[0].reconcile_interval.as_secs(), 60);
    let Err(ConfigError::Invalid(problems)) = config.settings() else {
        panic!("invalid config accepted");
    };
    let all = problems.join("\n");
    for expected in [
        "sources.ecs[1].namespace: \"elsewhere\"",
        "sources.ecs[1].clusters: \"dev\" is watched by another",
        "sources.ecs[1].reconcile_interval",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
    assert!(!all.contains("sources.ecs[0]"), "{all}");
}

#[test]
fn forward_and_transfer_sections_are_checked() {
    let config = Config::parse(
        r#"
[forward]
upstreams = ["10.0.0.2:53"]
timeout = "10ms"
[transfer]
allow = ["10.0.0.0/8", "192.0.2.1", "not-a-net"]
[[transfer.tsig_keys]]
name = "k"
algorithm = "hmac-md5"
secret = "!!"
"#,
    )
    .unwrap();
    let problems = match config.settings() {
        Err(ConfigError::Invalid(problems)) => problems.join("\n"),
        other => panic!("expected problems, got {other:?}"),
    };
    for field in [
        "forward.timeout",
        "transfer.allow[2]",
        "transfer.tsig_keys[0].secret",
        "transfer.tsig_keys[0].algorithm",
    ] {
        assert!(problems.contains(field), "{field} missing from {problems}");
    }
    let good = Config::parse("[transfer]\nallow = [\"127.0.0.1\", \"::1/128\"]").unwrap();
    assert_eq!(good.settings().unwrap().transfer.allow.len(), 2);
}

#[test]
fn without_credentials_only_a_loopback_listener_starts() {
    let problems = |text: &str| match Config::parse(text).unwrap().settings() {
        Ok(_) => String::new(),
        Err(ConfigError::Invalid(problems)) => problems.join("\n"),
        Err(other) => panic!("{other}"),
    };
    for open in ["127.0.0.1:8054", "127.0.0.2:80", "[::1]:8054"] {
        assert_eq!(
            problems(&format!("[http]\nlisten = \"{open}\"\n")),
            "",
            "{open}"
        );
    }
    for exposed in ["0.0.0.0:8054", "10.0.0.5:8054", "[::]:8054"] {
        let found = problems(&format!("[http]\nlisten = \"{exposed}\"\n"));
        assert!(found.contains("auth.allow_anonymous"), "{exposed}: {found}");
        let allowed = format!("[http]\nlisten = \"{exposed}\"\n[auth]\nallow_anonymous = true\n");
        assert_eq!(problems(&allowed), "", "{exposed} with allow_anonymous");
    }
    let hash = "a".repeat(64);
    let with_token = format!(
        "[http]\nlisten = \"0.0.0.0:8054\"\n[[auth.tokens]]\nname = \"ci\"\nsha256 = \"{hash}\"\nscopes = [\"read\"]\n"
    );
    assert_eq!(problems(&with_token), "");
}

#[test]
fn print_config_never_shows_an_inline_secret() {
    let text = r#"
[[auth.access_keys]]
id = "AKIDINLINE"
secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
[[auth.access_keys.allow]]
actions = ["servicediscovery:*"]
[[auth.access_keys]]
id = "AKIDFILE"
secret_file = "/run/secrets/muster"
[[auth.access_keys.allow]]
actions = ["servicediscovery:DiscoverInstances"]
namespaces = ["prod*"]
"#;
    let config = Config::parse(text).unwrap();
    let printed = config.to_toml();
    assert!(!printed.contains("wJalr"), "{printed}");
    assert!(!format!("{config:?}").contains("wJalr"));
    assert!(printed.contains(r#"secret = "<redacted>""#), "{printed}");
    assert!(
        printed.contains(r#"secret_file = "/run/secrets/muster""#),
        "{printed}"
    );
    let reparsed = Config::parse(&printed).unwrap();
    assert_eq!(reparsed.auth.access_keys[1], config.auth.access_keys[1]);
    // The placeholder read back is refused, not taken as the secret.
    let Err(ConfigError::Invalid(problems)) = reparsed.settings() else {
        panic!("a printed inline secret was accepted");
    };
    assert!(problems.join("\n").contains("auth.access_keys[0].secret"));
}

#[test]
fn a_file_without_namespaces_serves_none() {
    // A pure Cloud Map user creates namespaces through the API; only the embedded default
    // (no file) serves `internal`.
    let config = Config::parse("[dns]\nlisten = [\"127.0.0.1:8053\"]\n").unwrap();
    assert!(config.namespaces.is_empty());
    assert!(config.settings().unwrap().namespaces.is_empty());
    assert_eq!(Config::parse(&config.to_toml()).unwrap(), config);
    assert_eq!(Config::default().namespaces[0].name, "internal");
}

#[test]
fn zones_and_locality_are_checked() {
    let text = r#"
        [[namespaces]]
        name = "internal"
        [[namespaces.services]]
        match = "web"
        locality = "prefer_zone"
        min_local = 0
        [[zones]]
        name = "a"
        cidrs = ["10.0.0.0/16", "10.1.0.0/16"]
        [[zones]]
        name = "a"
        cidrs = ["10.0.0.9/16", "nowhere"]
        [[zones]]
        name = ""
        cidrs = []
    "#;
    let Err(ConfigError::Invalid(problems)) = Config::parse(text).unwrap().settings() else {
        panic!("invalid zones accepted");
    };
    let all = problems.join("\n");
    for expected in [
        "namespaces[0].services[0].min_local",
        "zones[1].name: \"a\" is given twice",
        "zones[1].cidrs: 10.0.0.0/16 is in two zones",
        "zones[1].cidrs[1]",
        "zones[2].name",
    ] {
        assert!(all.contains(expected), "{expected} missing from:\n{all}");
    }
    let good = text.replace("min_local = 0", "min_local = 2");
    let good = good.replace(
        "name = \"a\"\n        cidrs = [\"10.0.0.9/16\", \"nowhere\"]",
        "name = \"b\"\n        cidrs = [\"10.2.0.0/16\"]",
    );
    let good = good.replace(
        "name = \"\"\n        cidrs = []",
        "name = \"c\"\n        cidrs = []",
    );
    let settings = Config::parse(&good).unwrap().settings().unwrap();
    assert_eq!(settings.zones.len(), 3);
}

#[test]
fn zones_are_bounded_in_number_and_subnets() {
    let zone = |name: &str, cidrs: &[String]| {
        let cidrs: Vec<String> = cidrs.iter().map(|c| format!("\"{c}\"")).collect();
        format!(
            "[[zones]]\nname = \"{name}\"\ncidrs = [{}]\n",
            cidrs.join(", ")
        )
    };
    let subnets: Vec<String> = (0..1_025)
        .map(|n| format!("10.{}.{}.0/24", n / 256, n % 256))
        .collect();
    let problems = |text: &str| match Config::parse(text).unwrap().settings() {
        Err(ConfigError::Invalid(problems)) => problems.join("\n"),
        Ok(_) => String::new(),
        Err(other) => panic!("{other}"),
    };
    assert_eq!(
        problems(&zone("a", &subnets[..1_024])),
        "",
        "1,024 subnets are allowed"
    );
    let over = problems(&(zone("a", &subnets[..1_000]) + &zone("b", &subnets[1_000..])));
    assert!(over.contains("zones: 1025 subnets, at most 1024"), "{over}");
    let many: String = (0..65)
        .map(|n| zone(&format!("z{n}"), &subnets[n..=n]))
        .collect();
    let over = problems(&many);
    assert!(over.contains("zones: 65 zones, at most 64"), "{over}");
    assert_eq!(
        problems(&many[..many.rfind("[[zones]]").unwrap()]),
        "",
        "64 zones are allowed"
    );
}
