/*!
The Deployment Server's names for architectures: `cpu-endianness-bits-format`, with the CPU as
`QSysInfo::buildCpuArchitecture()` names it (`x86_64`, `i386`, `arm64`, `arm`), `little_endian`
or `big_endian`, `32` or `64`, and the binary format (`elf`, `mach_o`, `pe32`); `All` for a
package without binaries.

Its clients send `QSysInfo::buildAbi()` and the kernel type (`x86_64-little_endian-lp64-linux`,
`arm-little_endian-ilp32-eabi-linux`), which the server normalizes as the Deployment Server did:
at least four `-`-separated parts, the word size reduced to its digits, the kernel type (the
last part) turned into the binary format (`linux`, `freebsd`: `elf`; `darwin`: `mach_o`; `win`:
`pe32`) in place of the fourth part, anything after the fourth part dropped. A name already in
the normalized form passes unchanged.
*/

/// The Deployment Server's name of a package's architecture (ours: `all`, `linux_x86_64`, ...).
pub fn deployment_name(arch: &str) -> String {
    if arch == "all" {
        return "All".to_string();
    }
    let (os, rest) = arch.split_once('_').unwrap_or((arch, ""));
    let format = match os {
        "linux" | "android" => "elf",
        "windows" => "pe32",
        "macos" => "mach_o",
        _ => return arch.to_string(),
    };
    let (cpu, endianness) = match rest.strip_suffix("_be") {
        Some(cpu) => (cpu, "big_endian"),
        None => (rest, "little_endian"),
    };
    let (name, bits) = match cpu {
        "x86_64" => ("x86_64", "64"),
        "x86_32" => ("i386", "32"),
        "arm_64" => ("arm64", "64"),
        "arm_32" => ("arm", "32"),
        // Universal Mach-O binaries and unknown CPUs have no Deployment Server name: keep
        // ours, which no client asks for.
        _ => return arch.to_string(),
    };
    format!("{name}-{endianness}-{bits}-{format}")
}

/// A client's architecture, normalized; `None` when it is not understood (the Deployment
/// Server's `incompatible-architecture`).
pub fn normalize_requested(requested: &str) -> Option<String> {
    let mut parts: Vec<String> = requested.split('-').map(str::to_string).collect();
    if parts.len() < 4 || parts.iter().any(|p| p.is_empty()) || requested.len() > 128 {
        return None;
    }
    if !requested
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '/')
    {
        return None;
    }
    parts[2].retain(|c| c.is_ascii_digit());
    if parts[2].is_empty() {
        return None;
    }
    let kernel = parts
        .last()
        .map(|k| k.to_ascii_lowercase())
        .unwrap_or_default();
    let format = if kernel.contains("darwin") {
        Some("mach_o")
    } else if kernel.contains("linux") || kernel.contains("freebsd") {
        Some("elf")
    } else if kernel.contains("win") {
        Some("pe32")
    } else {
        None
    };
    if let Some(format) = format {
        parts[3] = format.to_string();
    }
    parts.truncate(4);
    Some(parts.join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_our_architectures_as_the_deployment_server() {
        assert_eq!(deployment_name("all"), "All");
        assert_eq!(
            deployment_name("linux_x86_64"),
            "x86_64-little_endian-64-elf"
        );
        assert_eq!(deployment_name("linux_arm_32"), "arm-little_endian-32-elf");
        assert_eq!(
            deployment_name("linux_arm_64_be"),
            "arm64-big_endian-64-elf"
        );
        assert_eq!(
            deployment_name("android_x86_32"),
            "i386-little_endian-32-elf"
        );
        assert_eq!(
            deployment_name("windows_x86_64"),
            "x86_64-little_endian-64-pe32"
        );
        assert_eq!(
            deployment_name("macos_arm_64"),
            "arm64-little_endian-64-mach_o"
        );
        assert_eq!(
            deployment_name("macos_universal_arm_64+x86_64"),
            "macos_universal_arm_64+x86_64"
        );
    }

    #[test]
    fn normalizes_what_clients_send() {
        let n = |s: &str| normalize_requested(s);
        assert_eq!(
            n("x86_64-little_endian-lp64-linux").as_deref(),
            Some("x86_64-little_endian-64-elf")
        );
        assert_eq!(
            n("arm-little_endian-ilp32-eabi-linux").as_deref(),
            Some("arm-little_endian-32-elf")
        );
        assert_eq!(
            n("x86_64-little_endian-lp64-darwin").as_deref(),
            Some("x86_64-little_endian-64-mach_o")
        );
        assert_eq!(
            n("x86_64-little_endian-llp64-winnt").as_deref(),
            Some("x86_64-little_endian-64-pe32")
        );
        assert_eq!(
            n("x86_64-little_endian-64-elf").as_deref(),
            Some("x86_64-little_endian-64-elf")
        );
        for bad in [
            "",
            "x86_64",
            "x86_64-little_endian-lp64",
            "a-b--c",
            "x86_64-little_endian-lp-linux",
            "x86 64-l-64-elf",
        ] {
            assert_eq!(n(bad), None, "{bad}");
        }
    }
}
