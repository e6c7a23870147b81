/* loupe/tokenizer.h — the llama2.c tokenizer (tokenizer.bin): loading, BPE
 * encoding with sentencepiece-style byte fallback, and decoding.
 *
 * File format (little-endian): int32 max_token_length, then for each of the
 * vocab_size tokens: float32 score, int32 len, len bytes of the piece (no NUL).
 * The vocab size is not stored in the file; it comes from the model, and the
 * loader checks that the file holds exactly that many tokens.
 *
 * Id layout (a sentencepiece BPE model with byte fallback, as llama2.c
 * exports it): 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), 3..258 the byte tokens
 * "<0x00>".."<0xFF>" (id = byte + 3), then the normal pieces. The export
 * writes sentencepiece's "▁" as a plain space, so pieces are raw text.
 *
 * A loaded tokenizer is immutable: every function taking a const pointer is
 * safe to call from several threads at once.
 */
#ifndef LOUPE_TOKENIZER_H
#define LOUPE_TOKENIZER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lp_tokenizer lp_tokenizer;

/* Load `path`, which must hold exactly `vocab_size` tokens (>= 259, with the
 * byte tokens at ids 3..258). Errors name the file: missing/unreadable
 * (LP_ERR_IO), truncated, bytes left over, a negative or oversized piece
 * length (each is checked against max_token_length and the bytes left),
 * misplaced byte tokens (LP_ERR_FORMAT), a non-finite score (LP_ERR_NUM),
 * vocab_size < 259 (LP_ERR_ARG). *out is NULL on failure. If two normal
 * pieces are equal, encode uses the lower id. */
int lp_tokenizer_load(lp_tokenizer **out, const char *path, int vocab_size);
void lp_tokenizer_free(lp_tokenizer *t);

int lp_tokenizer_vocab_size(const lp_tokenizer *t);
int lp_tokenizer_bos(const lp_tokenizer *t); /* 1 */
int lp_tokenizer_eos(const lp_tokenizer *t); /* 2 */

/* Encode UTF-8 `text` (llama2.c semantics): optional BOS; a dummy-prefix
 * space before non-empty text; one symbol per UTF-8 codepoint, or one byte
 * token per byte when the codepoint is not a piece (a malformed byte counts
 * as a one-byte codepoint); then repeatedly merge the adjacent pair whose
 * concatenation is a piece with the highest score (ties: leftmost); optional
 * EOS. O(n log n) in the text length (a heap of candidate pairs); scratch
 * memory is about 50 bytes per input byte, freed before returning.
 *
 * Unlike sentencepiece's default normaliser, the text is taken as is: runs of
 * spaces are not collapsed and leading/trailing spaces are kept, so
 * "a  b" gives different ids here than sentencepiece (which reads "a b").
 *
 * `ids` is a caller buffer of capacity `cap`; strlen(text) + 3 always
 * suffices. On success *n is the count. If `cap` is too small, returns
 * LP_ERR_ARG with *n set to the count needed (ids then holds only a prefix). */
int lp_tokenizer_encode(const lp_tokenizer *t, const char *text, int bos, int eos, int *ids,
                        int cap, int *n);

/* The raw piece of token `id` as stored in the file ("\n<s>\n" for BOS,
 * "<0x41>" for a byte token); NULL if id is out of range. */
const char *lp_tokenizer_piece(const lp_tokenizer *t, int id);

/* The text that token `id` contributes when it follows token `prev`:
 *  - a leading space is stripped when prev is BOS or prev < 0 (pass -1 for
 *    "start of text": this removes encode's dummy prefix, as sentencepiece's
 *    decoder does);
 *  - "<0xXX>" gives the single raw byte XX (0x00 gives "", since a C string
 *    cannot hold NUL; encode never produces it from a C string);
 *  - BOS and EOS give "" (their stored pieces are the markers "\n<s>\n" and
 *    "\n</s>\n"); <unk> gives its piece "<unk>".
 * The pointer is into the tokenizer's own immutable storage: valid until
 * lp_tokenizer_free, and safe to use from any thread. NULL if id is out of
 * range. Note a multi-byte UTF-8 character split into byte tokens comes out
 * one byte per call; concatenating the results gives the exact bytes. */
const char *lp_tokenizer_decode_piece(const lp_tokenizer *t, int prev, int id);

/* Decode ids[0..n) into a fresh malloc'd NUL-terminated string (caller frees
 * with free()): the concatenation of decode_piece(prev, id) with prev = -1
 * for the first token. So decode(encode(x)) == x for any C string x, with or
 * without BOS/EOS: only encode's dummy-prefix space is removed (text that
 * itself starts with a space keeps it). LP_ERR_ARG if an id is out of
 * range, LP_ERR_NOMEM if allocation fails. */
int lp_tokenizer_decode(const lp_tokenizer *t, const int *ids, int n, char **out);

/* For printing generated text: returns `piece`, or "" when piece is a single
 * ASCII control byte other than whitespace (e.g. a lone "<0x07>" byte
 * token). Bytes >= 0x80 pass through so that a UTF-8 character emitted as
 * several byte tokens still reassembles on the terminal. NULL gives "". */
const char *lp_tokenizer_safe_piece(const char *piece);

#ifdef __cplusplus
}
#endif
#endif
