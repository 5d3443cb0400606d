/*!
Which platform a payload file is built for, found while the file streams past.

The reader never holds a payload file, so detection works on what passes by: a bounded prefix
holds the file headers (ELF, PE, Mach-O, classified with the `object` crate), and for ELF files
the section header table is captured when its byte range streams by. An ELF file is Android's
when a `SHT_NOTE` section's name starts with `.note.android`; since the section name table may
come before or after the section headers, we record the file offsets where the text
`.note.android` occurs and match them against each note section's name offset at the end.
*/

use object::FileKind;
use object::{elf, macho, pe};

/// Bytes kept from the start of every file; enough for all headers we read.
const PREFIX_LEN: usize = 64 * 1024;
/// Largest section header table we capture (65535 entries of 64 bytes).
const MAX_SECTION_TABLE: u64 = 65535 * 64;
/// How many occurrences of the Android note name we remember.
const MAX_NAME_HITS: usize = 256;
const ANDROID_NOTE: &[u8] = b".note.android";
/// Offsets in the ELF identification bytes.
const EI_DATA: usize = 5;
const EI_OSABI: usize = 7;

/// Detects the architecture of one file fed to it in order.
#[derive(Default)]
pub struct ArchDetector {
    prefix: Vec<u8>,
    offset: u64,
    elf: Option<ElfScan>,
    /// Set once the prefix shows the file is no ELF file: later data is ignored.
    done_streaming: bool,
}

/// What we gather of an ELF file beyond its header.
struct ElfScan {
    header: ElfHeader,
    section_table: Vec<u8>,
    name_hits: Vec<u64>,
    /// The last bytes of the previous chunk, to find names split across chunks.
    carry: Vec<u8>,
}

#[derive(Clone, Copy)]
struct ElfHeader {
    is64: bool,
    big_endian: bool,
    machine: u16,
    shoff: u64,
    shnum: u64,
    shentsize: u64,
    shstrndx: u64,
}

impl ArchDetector {
    /// Feed the next chunk of the file.
    pub fn feed(&mut self, data: &[u8]) {
        if self.done_streaming {
            return;
        }
        if self.prefix.len() < PREFIX_LEN {
            let before = self.prefix.len();
            let take = data.len().min(PREFIX_LEN - before);
            self.prefix.extend_from_slice(&data[..take]);
            if self.elf.is_none() && self.prefix.len() >= 64 {
                match parse_elf_header(&self.prefix) {
                    Some(header) => {
                        // The scan starts late: show it the bytes that came before this chunk.
                        let mut scan = ElfScan::new(header);
                        scan.feed(0, &self.prefix[..before]);
                        self.elf = Some(scan);
                    }
                    None => self.done_streaming = self.prefix.len() >= PREFIX_LEN,
                }
            }
        }
        if let Some(scan) = &mut self.elf {
            scan.feed(self.offset, data);
        }
        self.offset += data.len() as u64;
    }

    /// The architecture identifier, or `None` when the file is no binary we know.
    pub fn finish(self) -> Option<String> {
        if let Some(scan) = self.elf {
            return Some(scan.identify());
        }
        // A file shorter than 64 bytes may still be a bare ELF header.
        if let Some(header) = parse_elf_header(&self.prefix) {
            return Some(ElfScan::new(header).identify());
        }
        identify_prefix(&self.prefix)
    }
}

/// The identifier of a whole binary in memory (for tests and tools).
pub fn identify(data: &[u8]) -> Option<String> {
    let mut detector = ArchDetector::default();
    for chunk in data.chunks(8192) {
        detector.feed(chunk);
    }
    detector.finish()
}

impl ElfScan {
    fn new(header: ElfHeader) -> ElfScan {
        ElfScan {
            header,
            section_table: Vec::new(),
            name_hits: Vec::new(),
            carry: Vec::new(),
        }
    }

    fn feed(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let h = &self.header;
        let table_len = h.shnum.saturating_mul(h.shentsize);
        if table_len <= MAX_SECTION_TABLE {
            let table_end = h.shoff.saturating_add(table_len);
            let from = h.shoff.max(offset);
            let to = table_end.min(end);
            if from < to {
                let start = (from - offset) as usize;
                let stop = (to - offset) as usize;
                self.section_table.extend_from_slice(&data[start..stop]);
            }
        }
        self.find_names(offset, data);
    }

    fn find_names(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() || self.name_hits.len() >= MAX_NAME_HITS {
            return;
        }
        // Search the carried tail plus the head of this chunk, then the chunk itself.
        let carry_len = self.carry.len();
        if carry_len > 0 {
            let mut joined = self.carry.clone();
            joined.extend_from_slice(&data[..data.len().min(ANDROID_NOTE.len() - 1)]);
            let base = offset - carry_len as u64;
            for pos in find_all(&joined) {
                if pos < carry_len {
                    self.name_hits.push(base + pos as u64);
                }
            }
        }
        for pos in find_all(data) {
            if self.name_hits.len() < MAX_NAME_HITS {
                self.name_hits.push(offset + pos as u64);
            }
        }
        // Keep the last bytes of carry + chunk: a name may start there and end in the next chunk.
        let keep = ANDROID_NOTE.len() - 1;
        if data.len() >= keep {
            self.carry = data[data.len() - keep..].to_vec();
        } else {
            self.carry.extend_from_slice(data);
            let excess = self.carry.len().saturating_sub(keep);
            self.carry.drain(..excess);
        }
    }

    fn identify(&self) -> String {
        let h = &self.header;
        let os = if self.is_android() {
            "android"
        } else {
            "linux"
        };
        let bits = if h.is64 { "64" } else { "32" };
        let machine = elf::Machine(h.machine);
        let cpu = if machine == elf::EM_386 || machine == elf::EM_X86_64 {
            format!("x86_{bits}")
        } else if machine == elf::EM_ARM || machine == elf::EM_AARCH64 {
            format!("arm_{bits}")
        } else {
            "unknown".to_string()
        };
        let endian = if h.big_endian { "_be" } else { "" };
        format!("{os}_{cpu}{endian}")
    }

    fn is_android(&self) -> bool {
        let h = &self.header;
        if self.name_hits.is_empty() || h.shentsize == 0 {
            return false;
        }
        let sections: Vec<&[u8]> = self
            .section_table
            .chunks_exact(h.shentsize as usize)
            .collect();
        let Some(strtab) = sections.get(h.shstrndx as usize) else {
            return false;
        };
        let Some(strtab_offset) = self.section_offset(strtab) else {
            return false;
        };
        sections.iter().any(|section| {
            let name = self.read_u32(section, 0);
            let kind = self.read_u32(section, 4);
            kind == Some(elf::SHT_NOTE.0)
                && name.is_some_and(|name| {
                    self.name_hits
                        .contains(&strtab_offset.saturating_add(u64::from(name)))
                })
        })
    }

    fn section_offset(&self, section: &[u8]) -> Option<u64> {
        if self.header.is64 {
            read_uint(section, 24, 8, self.header.big_endian)
        } else {
            read_uint(section, 16, 4, self.header.big_endian)
        }
    }

    fn read_u32(&self, section: &[u8], at: usize) -> Option<u32> {
        read_uint(section, at, 4, self.header.big_endian).map(|v| v as u32)
    }
}

fn find_all(haystack: &[u8]) -> impl Iterator<Item = usize> + '_ {
    haystack
        .windows(ANDROID_NOTE.len())
        .enumerate()
        .filter(|(_, window)| *window == ANDROID_NOTE)
        .map(|(pos, _)| pos)
}

fn read_uint(data: &[u8], at: usize, len: usize, big_endian: bool) -> Option<u64> {
    let bytes = data.get(at..at + len)?;
    let fold = |acc: u64, b: &u8| (acc << 8) | u64::from(*b);
    Some(if big_endian {
        bytes.iter().fold(0, fold)
    } else {
        bytes.iter().rev().fold(0, fold)
    })
}

/// An ELF header of a SysV or Linux binary, else `None`.
fn parse_elf_header(prefix: &[u8]) -> Option<ElfHeader> {
    let kind = FileKind::parse(prefix).ok()?;
    let is64 = match kind {
        FileKind::Elf32 => false,
        FileKind::Elf64 => true,
        _ => return None,
    };
    let data = elf::DataEncoding(*prefix.get(EI_DATA)?);
    let big_endian = if data == elf::ELFDATA2LSB {
        false
    } else if data == elf::ELFDATA2MSB {
        true
    } else {
        return None;
    };
    let os_abi = elf::OsAbi(*prefix.get(EI_OSABI)?);
    if os_abi != elf::ELFOSABI_SYSV && os_abi != elf::ELFOSABI_LINUX {
        return None;
    }
    let get = |at: usize, len: usize| read_uint(prefix, at, len, big_endian);
    let (shoff, shentsize_at) = if is64 {
        (get(0x28, 8)?, 0x3a)
    } else {
        (get(0x20, 4)?, 0x2e)
    };
    Some(ElfHeader {
        is64,
        big_endian,
        machine: get(0x12, 2)? as u16,
        shoff,
        shentsize: get(shentsize_at, 2)?,
        shnum: get(shentsize_at + 2, 2)?,
        shstrndx: get(shentsize_at + 4, 2)?,
    })
}

/// Identify a PE or Mach-O file from its first bytes.
fn identify_prefix(prefix: &[u8]) -> Option<String> {
    match FileKind::parse(prefix) {
        Ok(FileKind::Pe32 | FileKind::Pe64) => identify_pe(prefix),
        Ok(FileKind::MachO64) => identify_macho64(prefix),
        Ok(FileKind::MachOFat32 | FileKind::MachOFat64) => identify_fat(prefix),
        _ => None,
    }
}

fn identify_pe(prefix: &[u8]) -> Option<String> {
    let nt = read_uint(prefix, 0x3c, 4, false)? as usize;
    if prefix.get(nt..nt + 4)? != b"PE\0\0" {
        return None;
    }
    let machine = read_uint(prefix, nt + 4, 2, false)? as u16;
    let machine = pe::Machine(machine);
    let cpu = if machine == pe::IMAGE_FILE_MACHINE_I386 {
        "x86_32"
    } else if machine == pe::IMAGE_FILE_MACHINE_AMD64 {
        "x86_64"
    } else if machine == pe::IMAGE_FILE_MACHINE_ARM64 {
        "arm_64"
    } else {
        "unknown"
    };
    Some(format!("windows_{cpu}"))
}

fn identify_macho64(prefix: &[u8]) -> Option<String> {
    // Only little-endian 64-bit Mach-O files count (magic cf fa ed fe).
    if read_uint(prefix, 0, 4, false)? != u64::from(macho::MH_MAGIC_64) {
        return None;
    }
    let cputype = read_uint(prefix, 4, 4, false)? as u32;
    Some(format!("macos_{}", macho_cpu(cputype)))
}

/// A universal binary: 1 to 3 slices (more is most likely a Java class file, same magic).
fn identify_fat(prefix: &[u8]) -> Option<String> {
    let magic = read_uint(prefix, 0, 4, true)? as u32;
    let entry_len = if magic == macho::FAT_MAGIC_64 { 32 } else { 20 };
    let count = read_uint(prefix, 4, 4, true)? as usize;
    if !(1..=3).contains(&count) {
        return None;
    }
    let mut slices = Vec::with_capacity(count);
    for i in 0..count {
        let cputype = read_uint(prefix, 8 + i * entry_len, 4, true)? as u32;
        slices.push(macho_cpu(cputype));
    }
    slices.sort_unstable();
    slices.dedup();
    Some(format!("macos_universal_{}", slices.join("+")))
}

fn macho_cpu(cputype: u32) -> &'static str {
    let is64 = cputype & macho::CPU_ARCH_ABI64 != 0;
    let cpu = cputype & !macho::CPU_ARCH_MASK;
    match (cpu, is64) {
        (c, true) if c == macho::CPU_TYPE_X86.0 => "x86_64",
        (c, false) if c == macho::CPU_TYPE_X86.0 => "x86_32",
        (c, true) if c == macho::CPU_TYPE_ARM.0 => "arm_64",
        (c, false) if c == macho::CPU_TYPE_ARM.0 => "arm_32",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF file: header plus, optionally, a note section named `section_name`.
    fn elf(
        class64: bool,
        big_endian: bool,
        machine: elf::Machine,
        section_name: Option<&str>,
    ) -> Vec<u8> {
        let mut f = vec![0u8; if class64 { 64 } else { 52 }];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if class64 { 2 } else { 1 };
        f[5] = if big_endian { 2 } else { 1 };
        f[6] = 1;
        let put = |f: &mut Vec<u8>, at: usize, len: usize, v: u64| {
            for i in 0..len {
                let shift = if big_endian { 8 * (len - 1 - i) } else { 8 * i };
                f[at + i] = (v >> shift) as u8;
            }
        };
        put(&mut f, 0x10, 2, 2);
        put(&mut f, 0x12, 2, u64::from(machine.0));
        put(&mut f, 0x14, 4, 1);
        let (shoff_at, shentsize_at, entsize) = if class64 {
            (0x28, 0x3a, 64)
        } else {
            (0x20, 0x2e, 40)
        };
        if let Some(name) = section_name {
            // string table, then 3 section headers: null, note, strtab.
            let strtab_off = f.len() as u64;
            let strtab = format!("\0{name}\0.shstrtab\0");
            f.extend_from_slice(strtab.as_bytes());
            let shoff = f.len() as u64;
            f.resize(f.len() + 3 * entsize, 0);
            let base = shoff as usize;
            let (name_at, type_at, off_at, off_len) = if class64 {
                (0, 4, 24, 8)
            } else {
                (0, 4, 16, 4)
            };
            put(&mut f, base + entsize + name_at, 4, 1);
            put(
                &mut f,
                base + entsize + type_at,
                4,
                u64::from(elf::SHT_NOTE.0),
            );
            put(
                &mut f,
                base + 2 * entsize + name_at,
                4,
                2 + name.len() as u64,
            );
            put(
                &mut f,
                base + 2 * entsize + type_at,
                4,
                u64::from(elf::SHT_STRTAB.0),
            );
            put(&mut f, base + 2 * entsize + off_at, off_len, strtab_off);
            put(&mut f, shoff_at, if class64 { 8 } else { 4 }, shoff);
            put(&mut f, shentsize_at, 2, entsize as u64);
            put(&mut f, shentsize_at + 2, 2, 3);
            put(&mut f, shentsize_at + 4, 2, 2);
        }
        f
    }

    #[test]
    fn identifies_self_made_elf_headers() {
        assert_eq!(
            identify(&elf(true, false, elf::EM_X86_64, None)).unwrap(),
            "linux_x86_64"
        );
        assert_eq!(
            identify(&elf(false, false, elf::EM_386, None)).unwrap(),
            "linux_x86_32"
        );
        assert_eq!(
            identify(&elf(false, false, elf::EM_ARM, None)).unwrap(),
            "linux_arm_32"
        );
        assert_eq!(
            identify(&elf(true, false, elf::EM_AARCH64, None)).unwrap(),
            "linux_arm_64"
        );
        assert_eq!(
            identify(&elf(true, true, elf::EM_AARCH64, None)).unwrap(),
            "linux_arm_64_be"
        );
        assert_eq!(
            identify(&elf(false, true, elf::EM_PPC, None)).unwrap(),
            "linux_unknown_be"
        );
        assert_eq!(
            identify(&elf(true, false, elf::EM_RISCV, None)).unwrap(),
            "linux_unknown"
        );
    }

    #[test]
    fn finds_android_note_sections_in_any_chunking() {
        let file = elf(false, false, elf::EM_ARM, Some(".note.android.ident"));
        assert_eq!(identify(&file).unwrap(), "android_arm_32");
        for chunk in 1..20 {
            let mut d = ArchDetector::default();
            file.chunks(chunk).for_each(|c| d.feed(c));
            assert_eq!(d.finish().unwrap(), "android_arm_32", "chunk size {chunk}");
        }
        let be = elf(true, true, elf::EM_AARCH64, Some(".note.android.ident"));
        assert_eq!(identify(&be).unwrap(), "android_arm_64_be");
        // Another note name is no Android marker, nor is the text elsewhere in the file.
        let other = elf(true, false, elf::EM_AARCH64, Some(".note.gnu.build-id"));
        assert_eq!(identify(&other).unwrap(), "linux_arm_64");
        let mut text_only = elf(true, false, elf::EM_AARCH64, None);
        text_only.extend_from_slice(b"\0.note.android\0");
        assert_eq!(identify(&text_only).unwrap(), "linux_arm_64");
    }

    #[test]
    fn ignores_files_that_are_no_binaries() {
        assert_eq!(identify(b"#!/bin/sh\necho hello\n"), None);
        assert_eq!(identify(b""), None);
        assert_eq!(identify(b"\x7fELF"), None);
        // A Java class file shares the universal binary's magic.
        assert_eq!(
            identify(b"\xca\xfe\xba\xbe\x00\x00\x00\x34rest-of-class-file"),
            None
        );
        let mut freebsd = elf(true, false, elf::EM_X86_64, None);
        freebsd[EI_OSABI] = elf::ELFOSABI_FREEBSD.0;
        assert_eq!(identify(&freebsd), None);
    }

    #[test]
    fn identifies_the_shared_binaries() {
        let dir = std::path::Path::new("../shared/vectors/binaries");
        if !dir.exists() {
            eprintln!("skipping: ../shared/vectors is absent");
            return;
        }
        for (file, expected) in [
            ("android-elf.so", "android_arm_32"),
            ("windows-pe.exe", "windows_x86_64"),
            ("macos-macho", "macos_arm_64"),
            ("macos-universal", "macos_universal_arm_64+x86_64"),
        ] {
            let data = std::fs::read(dir.join(file)).unwrap();
            assert_eq!(identify(&data).as_deref(), Some(expected), "{file}");
        }
    }
}
