#!/usr/bin/env python3
"""sp_encode.py — the sentencepiece side of tests/test_tokenizer_sp.sh.

Story files hold stories separated by "<|endoftext|>"; each story is stripped
of surrounding ' \\t\\n\\r\\v\\f' and empty ones are skipped (exactly as
`test_tokenizer --encode` does).

  sp_encode.py normalise IN OUT
      Write IN's stories to OUT with sentencepiece's whitespace normalisation
      applied (remove_extra_whitespaces: strip leading/trailing spaces, collapse
      runs of spaces into one; only U+0020 counts, not tabs or newlines).

  sp_encode.py compare MODEL STORIES C_RAW C_NORM
      C_RAW / C_NORM: the C encoder's ids (BOS first, one story per line) for
      STORIES and for its normalised copy. Asserts that
        (1) C(normalise(story)) == sentencepiece(story) + BOS for every story;
        (2) C(story) differs from sentencepiece exactly for the stories that
            normalisation changes (the llama2.c encoder has no normaliser).
      Prints the first difference and exits 1 on any violation.
"""
import sys

SEP = "<|endoftext|>"
WS = " \t\n\r\v\f"


def read_stories(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    return [s.strip(WS) for s in text.split(SEP) if s.strip(WS)]


def normalise(s):
    return " ".join(w for w in s.split(" ") if w)


def read_ids(path):
    with open(path) as f:
        return [[int(x) for x in line.split()] for line in f.read().splitlines()]


def show(sp, ids, at):
    lo = max(0, at - 4)
    return " ".join("%d:%r" % (i, sp.id_to_piece(i)) for i in ids[lo:at + 5])


def first_diff(a, b):
    for k in range(min(len(a), len(b))):
        if a[k] != b[k]:
            return k
    return min(len(a), len(b))


def main(argv):
    if len(argv) == 4 and argv[1] == "normalise":
        with open(argv[3], "w", encoding="utf-8", newline="") as f:
            f.write(("\n%s\n" % SEP).join(normalise(s) for s in read_stories(argv[2])) + "\n")
        return 0
    if len(argv) != 6 or argv[1] != "compare":
        print(__doc__, file=sys.stderr)
        return 2
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=argv[2])
    stories = read_stories(argv[3])
    raw, norm = read_ids(argv[4]), read_ids(argv[5])
    if not (len(stories) == len(raw) == len(norm)):
        print("story counts differ: python %d, C raw %d, C normalised %d"
              % (len(stories), len(raw), len(norm)))
        return 1
    bos = sp.bos_id()
    ok = True
    expected_diff, raw_diff = set(), set()
    ntok = 0
    for i, s in enumerate(stories):
        ref = [bos] + sp.encode(s)
        ntok += len(ref)
        if normalise(s) != s:
            expected_diff.add(i)
        if raw[i] != ref:
            raw_diff.add(i)
        if norm[i] != ref and ok:
            k = first_diff(norm[i], ref)
            print("MISMATCH story %d (normalised text), token %d:" % (i, k))
            print("  C : %s" % show(sp, norm[i], k))
            print("  sp: %s" % show(sp, ref, k))
            print("  story starts: %r" % s[:80])
            ok = False
    if raw_diff != expected_diff:
        bad = sorted(raw_diff ^ expected_diff)
        i = bad[0]
        ref = [bos] + sp.encode(stories[i])
        k = first_diff(raw[i], ref)
        print("raw-text differences are not exactly the stories with extra spaces: %d unexplained, "
              "first story %d token %d" % (len(bad), i, k))
        print("  C : %s" % show(sp, raw[i], k))
        print("  sp: %s" % show(sp, ref, k))
        ok = False
    if ok:
        print("%s: %d stories, %d tokens: all match; raw text differs only where sentencepiece "
              "collapses extra spaces (%d stories)" % (argv[3], len(stories), ntok, len(expected_diff)))
    else:
        print("%s: FAILED" % argv[3])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
