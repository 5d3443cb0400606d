//! `appman-packager`: create, sign and verify Qt Application Manager packages, with the
//! subcommands, arguments and exit codes of the real Qt tool.

use amps::fsutil::write_atomically;
use amps::package::signature::{SigningKey, TrustStore, digest_content, store_content};
use amps::package::tags::Tag;
use amps::package::writer::{CreateOptions, SignatureKind, add_signature, create_package};
use amps::package::{Limits, PackageError, PackageInfo, read_package};
use amps::yaml::{Node, YamlLimits, parse_documents, to_json};
use lexopt::prelude::*;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: appman-packager <command> [options] <arguments>

Qt Application Manager packager (Rust implementation)

Commands:
  create-package        Create a new package.
  dev-sign-package      Add developer signature to package.
  dev-verify-package    Verify developer signature on package.
  store-sign-package    Add store signature to package.
  store-verify-package  Verify store signature on package.

Options:
  -h, --help     Show help (also per command: appman-packager <command> --help).
  --version      Show the version.
";

const CREATE_USAGE: &str = "\
Usage: appman-packager create-package [options] <package> <source-directory>

Create a new package from a directory holding info.yaml, its icon and the payload.

Options:
  --verbose                       Dump the package's meta-data header and footer information.
  --json                          Output the dump in JSON format instead of YAML.
  -m, --extra-metadata <yaml>     Add extra meta-data to the package header (a YAML map snippet).
  -M, --extra-metadata-file <f>   Add extra meta-data from a YAML file to the package header.
  -s, --extra-signed-metadata <yaml>
                                  Add extra, signed meta-data to the package header.
  -S, --extra-signed-metadata-file <f>
                                  Add extra, signed meta-data from a YAML file to the header.
  --tag <tag>                     Add a tag (name, or name:version) to extra.tags
                                  (repeatable; our extension).
";

const DEV_SIGN_USAGE: &str = "\
Usage: appman-packager dev-sign-package [--verbose] <package> <signed-package> <certificate> <password>

Add a developer signature, made with a PKCS#12 certificate file and its password.
";

const DEV_VERIFY_USAGE: &str = "\
Usage: appman-packager dev-verify-package [--verbose] <package> <certificates...>

Verify the developer signature against CA certificate files (PEM, several per file allowed).
Exit code: 0 valid, 1 no signature or error, 2 invalid signature.
";

const STORE_SIGN_USAGE: &str = "\
Usage: appman-packager store-sign-package [--verbose] <package> <signed-package> <certificate> <password> <hardware-id>

Add a store signature, bound to the device's hardware id (an empty string binds to none).
";

const STORE_VERIFY_USAGE: &str = "\
Usage: appman-packager store-verify-package [--verbose] <package> <certificates...> <hardware-id>

Verify the store signature against CA certificate files for the given hardware id.
Exit code: 0 valid, 1 no signature or error, 2 invalid signature.
";

/// How a command failed: plain errors exit 1, invalid signatures exit 2.
enum Failure {
    Error(String),
    InvalidSignature(String),
    Usage(String, &'static str),
}

impl From<PackageError> for Failure {
    fn from(e: PackageError) -> Self {
        Failure::Error(e.to_string())
    }
}

impl From<lexopt::Error> for Failure {
    fn from(e: lexopt::Error) -> Self {
        Failure::Usage(e.to_string(), USAGE)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Error(message)) => {
            eprintln!("ERROR: {message}");
            ExitCode::from(1)
        }
        Err(Failure::InvalidSignature(message)) => {
            eprintln!("ERROR: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Usage(message, usage)) => {
            eprintln!("ERROR: {message}\n\n{usage}");
            ExitCode::from(1)
        }
    }
}

/// The command line of one subcommand: its flags and positional arguments.
#[derive(Default)]
struct Args {
    verbose: bool,
    json: bool,
    extra: Vec<(String, Node)>,
    extra_signed: Vec<(String, Node)>,
    /// `--tag`s, normalized, in order.
    tags: Vec<String>,
    positional: Vec<OsString>,
}

fn run() -> Result<(), Failure> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(command)) => command.string()?,
        Some(Long("help") | Short('h')) => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(Long("version")) => {
            println!("{}", amps::version_line("appman-packager"));
            return Ok(());
        }
        Some(other) => return Err(Failure::Usage(other.unexpected().to_string(), USAGE)),
        None => return Err(Failure::Usage("no command given".into(), USAGE)),
    };
    let (usage, count): (&'static str, std::ops::RangeInclusive<usize>) = match command.as_str() {
        "create-package" => (CREATE_USAGE, 2..=2),
        "dev-sign-package" => (DEV_SIGN_USAGE, 4..=4),
        "dev-verify-package" => (DEV_VERIFY_USAGE, 2..=usize::MAX),
        "store-sign-package" => (STORE_SIGN_USAGE, 5..=5),
        "store-verify-package" => (STORE_VERIFY_USAGE, 3..=usize::MAX),
        other => return Err(Failure::Usage(format!("unknown command '{other}'"), USAGE)),
    };
    let Some(args) = parse_args(&mut parser, &command, usage)? else {
        print!("{usage}");
        return Ok(());
    };
    if !count.contains(&args.positional.len()) {
        return Err(Failure::Usage("wrong number of arguments".into(), usage));
    }
    let p = &args.positional;
    match command.as_str() {
        "create-package" => create(&args, Path::new(&p[0]), Path::new(&p[1])),
        "dev-sign-package" => sign(&args, SignatureKind::Developer, None),
        "store-sign-package" => sign(&args, SignatureKind::Store, Some(text(&p[4])?)),
        "dev-verify-package" => verify(&args, SignatureKind::Developer, &p[1..], ""),
        _ => {
            let (cas, hardware_id) = p[1..].split_at(p.len() - 2);
            verify(&args, SignatureKind::Store, cas, &text(&hardware_id[0])?)
        }
    }
}

/// `None` when help was asked for.
fn parse_args(
    parser: &mut lexopt::Parser,
    command: &str,
    usage: &'static str,
) -> Result<Option<Args>, Failure> {
    let mut args = Args::default();
    let creating = command == "create-package";
    let usage_error = |e: lexopt::Error| Failure::Usage(e.to_string(), usage);
    while let Some(arg) = parser.next().map_err(usage_error)? {
        if creating && let Some((signed, from_file)) = metadata_option(&arg) {
            let value = parser.value().map_err(usage_error)?;
            let (name, yaml) = if from_file {
                read_text_file(&value)?
            } else {
                let what = if signed {
                    "--extra-signed-metadata"
                } else {
                    "--extra-metadata"
                };
                (what.to_string(), text(&value)?)
            };
            let target = if signed {
                &mut args.extra_signed
            } else {
                &mut args.extra
            };
            merge_map(target, &yaml, &name)?;
            continue;
        }
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("verbose") => args.verbose = true,
            Long("json") if creating => args.json = true,
            Long("tag") if creating => {
                let value = text(&parser.value().map_err(usage_error)?)?;
                let tag = Tag::parse(&value).map_err(|e| Failure::Error(format!("--tag: {e}")))?;
                args.tags.push(tag.to_string());
            }
            Value(value) => args.positional.push(value),
            other => return Err(Failure::Usage(other.unexpected().to_string(), usage)),
        }
    }
    Ok(Some(args))
}

/// For `-m`/`-M`/`-s`/`-S` and their long names: (signed, from a file).
fn metadata_option(arg: &lexopt::Arg<'_>) -> Option<(bool, bool)> {
    match arg {
        Short('m') | Long("extra-metadata") => Some((false, false)),
        Short('M') | Long("extra-metadata-file") => Some((false, true)),
        Short('s') | Long("extra-signed-metadata") => Some((true, false)),
        Short('S') | Long("extra-signed-metadata-file") => Some((true, true)),
        _ => None,
    }
}

fn text(value: &OsString) -> Result<String, Failure> {
    value
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::Error(format!("argument {value:?} is not valid UTF-8")))
}

fn read_text_file(path: &OsString) -> Result<(String, String), Failure> {
    let name = PathBuf::from(path).display().to_string();
    std::fs::read_to_string(path)
        .map(|content| (name.clone(), content))
        .map_err(|e| Failure::Error(format!("could not read {name}: {e}")))
}

/// Merge the YAML map in `source` into `target`; later keys replace earlier ones.
fn merge_map(target: &mut Vec<(String, Node)>, source: &str, what: &str) -> Result<(), Failure> {
    let docs = parse_documents(source, &YamlLimits::default())
        .map_err(|e| Failure::Error(format!("{what} is not valid YAML: {e}")))?;
    for doc in docs {
        let Node::Map(entries) = doc else {
            return Err(Failure::Error(format!("{what} must be a YAML map")));
        };
        for (key, value) in entries {
            target.retain(|(k, _)| *k != key);
            target.push((key, value));
        }
    }
    Ok(())
}

/// Append `tags` to the `tags` list of `extra` (made when missing), skipping ones it has.
fn add_tags(extra: &mut Vec<(String, Node)>, tags: &[String]) -> Result<(), Failure> {
    if tags.is_empty() {
        return Ok(());
    }
    let at = match extra.iter().position(|(k, _)| k == "tags") {
        Some(at) => at,
        None => {
            extra.push(("tags".to_string(), Node::List(Vec::new())));
            extra.len() - 1
        }
    };
    let Node::List(items) = &mut extra[at].1 else {
        return Err(Failure::Error(
            "--tag: the extra meta-data's 'tags' is not a list".into(),
        ));
    };
    for tag in tags {
        if !items.iter().any(|i| i.as_text() == Some(tag.as_str())) {
            items.push(Node::string(tag));
        }
    }
    Ok(())
}

fn create(args: &Args, package: &Path, source: &Path) -> Result<(), Failure> {
    if !source.is_dir() {
        return Err(Failure::Error(format!(
            "source {} is not a directory",
            source.display()
        )));
    }
    let mut extra = args.extra.clone();
    add_tags(&mut extra, &args.tags)?;
    let options = CreateOptions {
        extra,
        extra_signed: args.extra_signed.clone(),
    };
    let mut report = None;
    write_atomically(package, |out| -> Result<(), PackageError> {
        report = Some(create_package(source, out, &options)?);
        Ok(())
    })
    .map_err(|e| {
        Failure::Error(format!(
            "could not create package {}: {e}",
            package.display()
        ))
    })?;
    if args.verbose
        && let Some(report) = report
    {
        dump(&[&report.header, &report.footer], args.json);
    }
    Ok(())
}

/// Print header and footer metadata, as YAML documents or one JSON object.
fn dump(texts: &[&str], json: bool) {
    let docs: Vec<Node> = texts
        .iter()
        .filter_map(|t| parse_documents(t, &YamlLimits::default()).ok())
        .filter_map(|mut d| d.pop())
        .collect();
    if json {
        let merged: serde_json::Map<String, serde_json::Value> = docs
            .iter()
            .filter_map(|d| match to_json(d) {
                serde_json::Value::Object(map) => Some(map),
                _ => None,
            })
            .flatten()
            .collect();
        println!("{}", serde_json::Value::Object(merged));
    } else {
        for text in texts {
            print!("{text}");
        }
    }
}

fn open_package(path: &Path) -> Result<PackageInfo, Failure> {
    let file = File::open(path).map_err(|e| {
        Failure::Error(format!(
            "could not open package file {}: {e}",
            path.display()
        ))
    })?;
    read_package(file, &Limits::default())
        .map_err(|e| Failure::Error(format!("package {} is invalid: {e}", path.display())))
}

fn sign(args: &Args, kind: SignatureKind, hardware_id: Option<String>) -> Result<(), Failure> {
    let p = &args.positional;
    let (input, output) = (Path::new(&p[0]), Path::new(&p[1]));
    let key = SigningKey::from_pkcs12_file(Path::new(&p[2]), &text(&p[3])?)
        .map_err(|e| Failure::Error(e.to_string()))?;
    let info = open_package(input)?;
    let content = match &hardware_id {
        Some(id) => store_content(&info.digest, id).map_err(|e| Failure::Error(e.to_string()))?,
        None => digest_content(&info.digest),
    };
    let signature = key
        .sign(content.as_bytes())
        .map_err(|e| Failure::Error(e.to_string()))?;
    let source = File::open(input).map_err(|e| {
        Failure::Error(format!(
            "could not open package file {}: {e}",
            input.display()
        ))
    })?;
    write_atomically(output, |out| {
        add_signature(source, out, kind, &signature, &Limits::default())
    })
    .map_err(|e| Failure::Error(format!("could not write {}: {e}", output.display())))?;
    if args.verbose {
        println!(
            "signed {} -> {} (digest {})",
            input.display(),
            output.display(),
            info.digest_hex()
        );
    }
    Ok(())
}

fn verify(
    args: &Args,
    kind: SignatureKind,
    cas: &[OsString],
    hardware_id: &str,
) -> Result<(), Failure> {
    let package = Path::new(&args.positional[0]);
    let info = open_package(package)?;
    let (signature, content, what) = match kind {
        SignatureKind::Developer => (
            info.developer_signature.as_ref(),
            digest_content(&info.digest),
            "developer",
        ),
        SignatureKind::Store => (
            info.store_signature.as_ref(),
            store_content(&info.digest, hardware_id).map_err(|e| Failure::Error(e.to_string()))?,
            "store",
        ),
    };
    let Some(signature) = signature else {
        return Err(Failure::Error(format!(
            "package {} has no {what} signature",
            package.display()
        )));
    };
    let trust = TrustStore::from_files(cas).map_err(|e| Failure::Error(e.to_string()))?;
    trust
        .verify(signature, content.as_bytes())
        .map_err(|e| Failure::InvalidSignature(rejection(what, &e, kind, hardware_id)))?;
    let bound = match (kind, hardware_id) {
        (SignatureKind::Store, "") => " (bound to no hardware id)",
        (SignatureKind::Store, _) => " (for this hardware id)",
        _ => "",
    };
    println!(
        "the {what} signature of {} is valid{bound}",
        package.display()
    );
    Ok(())
}

/// Why a signature was refused, in words: a store signature over other content was made for
/// another hardware id (or for none), which is what a user gets wrong.
fn rejection(
    what: &str,
    error: &amps::package::signature::SignatureError,
    kind: SignatureKind,
    hardware_id: &str,
) -> String {
    use amps::package::signature::SignatureError;
    match (kind, error) {
        (SignatureKind::Store, SignatureError::ContentMismatch) if hardware_id.is_empty() => {
            "invalid store signature: it does not match without a hardware id (it was signed for a device: give its hardware id)".to_string()
        }
        (SignatureKind::Store, SignatureError::ContentMismatch) => format!(
            "invalid store signature: it does not match the hardware id '{hardware_id}' (it was signed for another device, or for none)"
        ),
        (_, error) => format!("invalid {what} signature: {error}"),
    }
}
