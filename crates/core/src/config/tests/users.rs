//! `[[user]]` and `[cluster] password_files`: the file's own rules (the server's verdict on
//! the rules and reading the files are tested in `redisrepd_io`).

use super::*;

fn user(name: &str, files: &str, rules: &str) -> String {
    format!("\n[[user]]\nname = \"{name}\"\n{files}\nrules = \"{rules}\"\n")
}

#[test]
fn a_user_takes_one_or_two_password_files_and_its_rules_as_tokens() {
    let text = format!(
        "{CLUSTER}{}{}{}",
        trio(),
        user(
            "app",
            "password_files = [\"app.new\", \"app\"]",
            "~* &* +@all -@admin"
        ),
        user("ro", "password_file = \"/abs/ro\"", "~cache:*  +@read")
    );
    let g = ok(&text).group;
    let app = g.user("app").expect("app");
    let paths: Vec<&Path> = app
        .password_files
        .iter()
        .map(|f| f.path.as_path())
        .collect();
    assert_eq!(
        paths,
        [
            Path::new("/etc/redisrepd/app.new"),
            Path::new("/etc/redisrepd/app")
        ]
    );
    assert_eq!(app.rules, ["~*", "&*", "+@all", "-@admin"]);
    let ro = g.user("ro").expect("ro");
    assert_eq!(ro.password_files[0].path, Path::new("/abs/ro"));
    assert_eq!(ro.rules, ["~cache:*", "+@read"]);
}

#[test]
fn bad_users_are_each_named() {
    let text = format!(
        "{CLUSTER}{}{}{}{}{}{}{}{}{}",
        trio(),
        user("three", "password_files = [\"a\", \"b\", \"c\"]", "+get"),
        user("dup", "password_file = \"a\"", "+get"),
        user("dup", "password_file = \"b\"", "+get"),
        user("redisrepd-replication", "password_file = \"a\"", "+get"),
        user("pw", "password_file = \"a\"", "+get >hunter2 nopass"),
        user("none", "", "+get"),
        user(
            "both",
            "password_file = \"a\"\npassword_files = [\"b\"]",
            "+get"
        ),
        user("bad name", "password_file = \"a\"", "+get"),
    );
    let p = problems(&text);
    let want = [
        "key `user.three.password_files`: lists 3 files: at most two",
        "key `user.dup`: is declared by more than one [[user]]",
        "key `user.redisrepd-replication`: `redisrepd-replication` is taken",
        "key `user.pw.rules`: `>` sets or clears passwords",
        "key `user.pw.rules`: `nopass` sets or clears passwords",
        "key `user.none.password_file`: is missing",
        "key `user.both.password_files`: both `password_file` and `password_files`",
        "`bad name` is not a valid user name",
    ];
    for w in want {
        assert!(p.iter().any(|x| x.contains(w)), "{w}\n{p:#?}");
    }
    assert_eq!(p.len(), want.len(), "{p:#?}");
    assert!(
        !p.iter().any(|x| x.contains("hunter2")),
        "a password in {p:#?}"
    );
}

#[test]
fn users_need_a_cluster_password() {
    let text = format!(
        "[cluster]\nname = \"t\"\n{}{}",
        trio(),
        user("app", "password_file = \"a\"", "+get")
    );
    one_problem(&text, &["[[user]] needs a cluster password"]);
}

#[test]
fn the_cluster_password_may_have_two_files() {
    let text = format!(
        "[cluster]\nname = \"t\"\npassword_files = [\"pw.new\", \"pw\"]\n{}",
        trio()
    );
    let g = ok(&text).group;
    let PasswordSource::Files(files) = &g.cluster.password else {
        panic!("{:?}", g.cluster.password)
    };
    assert_eq!(files.len(), 2);
    assert!(g.password().is_none(), "not read yet");
    let p = problems(&format!(
        "[cluster]\nname = \"t\"\npassword_file = \"pw\"\npassword_files = [\"a\", \"b\", \"c\"]\n{}",
        trio()
    ));
    assert!(
        p.iter()
            .any(|x| x.contains("key `password_files`: is set with")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| x.contains("key `password_files`: lists 3 files")),
        "{p:#?}"
    );
    one_problem(
        &format!("[cluster]\nname = \"t\"\npassword_files = []\n{}", trio()),
        &["key `password_files`: is empty"],
    );
}

#[test]
fn acl_directives_are_managed() {
    for key in ["masteruser", "user", "aclfile"] {
        one_problem(
            &format!("{CLUSTER}[redis]\n{key} = \"x\"\n{}", trio()),
            &[&format!("redisrepd manages `{key}` itself")],
        );
    }
}
