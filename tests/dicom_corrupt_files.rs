//! Damaged real files never crash ingest: every CT file of the public corpus is truncated at
//! several points and has bytes flipped at deterministic offsets; each variant must end as a
//! decoded image or a typed error (panics inside dicom-rs are caught and reported as
//! `ParserPanic` / `DecoderPanic`, which is the documented behaviour), and a folder of all the
//! variants must be fully accounted for by `ingest`. Needs `NEPHROD_CORPUS`.

use std::path::PathBuf;

use nephrod::dicom::ingest::ingest;
use nephrod::dicom::pixels::decode_path;

#[test]
fn truncated_and_byte_flipped_ct_files_give_typed_errors() {
    let corpus = PathBuf::from(
        std::env::var_os("NEPHROD_CORPUS").expect("NEPHROD_CORPUS is not set: run tools/test.sh"),
    );
    let sources: Vec<PathBuf> = [
        "data_store/data/693_J2KR.dcm",
        "data_store/data/693_UNCR.dcm",
        "data_store/data/explicit_VR-UN.dcm",
        "pydicom/data/test_files/CT_small.dcm",
        "pydicom/data/test_files/MR_small_RLE.dcm",
        "pydicom/data/test_files/emri_small_RLE.dcm",
        "pydicom/data/test_files/JPEG2000.dcm",
        "pydicom/data/test_files/SC_jpeg_no_color_transform.dcm",
        "data_store/data/eCT_Supplemental.dcm",
        "pydicom/data/test_files/image_dfl.dcm",
    ]
    .iter()
    .map(|p| corpus.join(p))
    .filter(|p| p.exists())
    .collect();
    assert!(sources.len() >= 8, "corpus files missing: {sources:?}");
    let tmp = tempfile::tempdir().unwrap();
    let mut variants = 0;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for (n, src) in sources.iter().enumerate() {
        let bytes = std::fs::read(src).unwrap();
        let len = bytes.len();
        let mut write = |name: String, data: Vec<u8>| {
            let p = tmp.path().join(name);
            std::fs::write(&p, data).unwrap();
            // Must return (Ok or a typed error), never unwind out.
            let _ = decode_path(&p);
            variants += 1;
        };
        for cut in [128, 400, len / 3, len / 2, len - 7] {
            if cut < len {
                write(format!("{n}_cut{cut}.dcm"), bytes[..cut].to_vec());
            }
        }
        for flip in 0..12 {
            let mut d = bytes.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = 132 + (state as usize) % (len - 132);
                d[at] ^= (state >> 32) as u8 | 1;
            }
            write(format!("{n}_flip{flip}.dcm"), d);
        }
    }
    let report = ingest(tmp.path(), false).report;
    let listed = report.skipped.len()
        + report
            .studies
            .iter()
            .flat_map(|s| &s.series)
            .map(|s| s.files.len())
            .sum::<usize>();
    assert_eq!(
        listed, variants,
        "every damaged file ends in exactly one place"
    );
}
