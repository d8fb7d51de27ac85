/*
 * Fast path of TotalEventsDailyTask's hot loop: count events per date in a block of lines.
 *
 * count_dates(block, counts, discards, deferred) -> number of lines
 *
 * For every line of `block` (lines joined by '\n'), this either
 *   - counts it: the line is one strictly valid JSON object whose last top-level "time" member
 *     is a non-empty printable-ASCII string without escapes; counts[date] += 1, date being the
 *     text before the first 'T';
 *   - counts a discard: the same, but no top-level "time" member, or "time" is "":
 *     discards["missing time"] += 1;
 *   - or defers it: appends (start, end) to `deferred` for the Python reference path
 *     (pipeline.events), which handles everything unusual: invalid JSON (rescue, leniency),
 *     escapes in keys or in the time value, non-ASCII or non-string times, deep nesting.
 * Deferring is always safe; the C side only takes lines whose meaning is unambiguous.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} cursor;

static inline void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r')) c->p++;
}

/* Scan a string body after its opening quote. Returns 1 and leaves p after the closing
 * quote; 0 on invalid content (control character, bad escape, unterminated).
 * *escaped is set when the string contains a backslash; *ascii, when given, is cleared on a
 * byte outside printable ASCII. */
static int scan_string(cursor *c, int *escaped, int *ascii) {
    const unsigned char *p = c->p, *end = c->end;
    for (;;) {
#if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8('"'), slash = _mm_set1_epi8('\\');
        const __m128i low = _mm_set1_epi8(0x1f), high = _mm_set1_epi8(0x7e);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)p);
            __m128i special = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash));
            /* v <= 0x1f (unsigned): min(v, 0x1f) == v */
            special = _mm_or_si128(special, _mm_cmpeq_epi8(_mm_min_epu8(v, low), v));
            int mask = _mm_movemask_epi8(special);
            if (ascii && *ascii) {
                /* v > 0x7e (unsigned): max(v, 0x7e) != 0x7e */
                int wide = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(v, high), high));
                if (wide != 0xffff) {
                    int first_wide = __builtin_ctz(~wide & 0xffff);
                    if (!mask || first_wide < __builtin_ctz(mask)) *ascii = 0;
                }
            }
            if (mask) {
                p += __builtin_ctz(mask);
                break;
            }
            p += 16;
        }
#endif
        while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) {
            if (ascii && *p > 0x7e) *ascii = 0;
            p++;
        }
        if (p >= end || *p < 0x20) return 0;
        if (*p == '"') {
            c->p = p + 1;
            return 1;
        }
        /* backslash escape */
        *escaped = 1;
        if (end - p < 2) return 0;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            break;
        case 'u':
            if (end - p < 6) return 0;
            for (int i = 2; i < 6; i++) {
                if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
                      (p[i] >= 'A' && p[i] <= 'F')))
                    return 0;
            }
            p += 6;
            break;
        default:
            return 0;
        }
    }
}

static int scan_number(cursor *c) {
    const unsigned char *p = c->p, *end = c->end;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < end && *p >= '0' && *p <= '9') p++;
    } else {
        return 0;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    c->p = p;
    return 1;
}

static int scan_literal(cursor *c, const char *word, Py_ssize_t length) {
    if (c->end - c->p < length || memcmp(c->p, word, length) != 0) return 0;
    c->p += length;
    return 1;
}

static int scan_value(cursor *c, int depth);

/* After '{' or '[': a container's members. */
static int scan_container(cursor *c, int depth, unsigned char close) {
    if (depth > MAX_DEPTH) return 0;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            int escaped = 0;
            if (c->p >= c->end || *c->p != '"') return 0;
            c->p++;
            if (!scan_string(c, &escaped, NULL)) return 0;
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return 0;
            c->p++;
            skip_ws(c);
        }
        if (!scan_value(c, depth + 1)) return 0;
        skip_ws(c);
        if (c->p >= c->end) return 0;
        if (*c->p == ',') {
            c->p++;
            skip_ws(c);
            continue;
        }
        if (*c->p == close) {
            c->p++;
            return 1;
        }
        return 0;
    }
}

static int scan_value(cursor *c, int depth) {
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '"': {
        int escaped = 0;
        c->p++;
        return scan_string(c, &escaped, NULL);
    }
    case '{': c->p++; return scan_container(c, depth, '}');
    case '[': c->p++; return scan_container(c, depth, ']');
    case 't': return scan_literal(c, "true", 4);
    case 'f': return scan_literal(c, "false", 5);
    case 'n': return scan_literal(c, "null", 4);
    default: return scan_number(c);
    }
}

enum outcome { COUNTED, MISSING, DEFER };

/* One line: the top-level object, remembering its last "time" member. */
static enum outcome scan_line(cursor *c, const unsigned char **date, Py_ssize_t *date_len) {
    const unsigned char *time_start = NULL;
    Py_ssize_t time_len = 0;
    int time_usable = 1;  /* the last "time" member seen is a plain ASCII string */
    skip_ws(c);
    if (c->p >= c->end || *c->p != '{') return DEFER;
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
    } else {
        for (;;) {
            int key_escaped = 0;
            if (c->p >= c->end || *c->p != '"') return DEFER;
            const unsigned char *key = ++c->p;
            if (!scan_string(c, &key_escaped, NULL)) return DEFER;
            if (key_escaped) return DEFER; /* could spell "time" */
            int is_time = (c->p - 1 - key == 4 && memcmp(key, "time", 4) == 0);
            skip_ws(c);
            if (c->p >= c->end || *c->p != ':') return DEFER;
            c->p++;
            skip_ws(c);
            if (is_time) {
                if (c->p < c->end && *c->p == '"') {
                    int escaped = 0, time_ascii = 1;
                    time_start = ++c->p;
                    if (!scan_string(c, &escaped, &time_ascii)) return DEFER;
                    time_len = c->p - 1 - time_start;
                    time_usable = !escaped && time_ascii;
                } else {
                    if (!scan_value(c, 1)) return DEFER;
                    time_start = c->p; /* non-string time: Python classifies it */
                    time_usable = 0;
                }
            } else if (!scan_value(c, 1)) {
                return DEFER;
            }
            skip_ws(c);
            if (c->p >= c->end) return DEFER;
            if (*c->p == ',') {
                c->p++;
                skip_ws(c);
                continue;
            }
            if (*c->p == '}') {
                c->p++;
                break;
            }
            return DEFER;
        }
    }
    skip_ws(c);
    if (c->p != c->end) return DEFER; /* trailing text: the Python path may rescue it */
    if (time_start == NULL) return MISSING;
    if (!time_usable) return DEFER;
    if (time_len == 0) return MISSING;
    const unsigned char *t = memchr(time_start, 'T', time_len);
    *date = time_start;
    *date_len = t ? t - time_start : time_len;
    return COUNTED;
}

static int add_count(PyObject *dict, const unsigned char *key, Py_ssize_t length, Py_ssize_t n) {
    PyObject *name = PyUnicode_DecodeASCII((const char *)key, length, NULL);
    if (name == NULL) return -1;
    PyObject *current = PyDict_GetItemWithError(dict, name);
    Py_ssize_t value = n;
    if (current != NULL) {
        value += PyLong_AsSsize_t(current);
    } else if (PyErr_Occurred()) {
        Py_DECREF(name);
        return -1;
    }
    PyObject *total = PyLong_FromSsize_t(value);
    int status = total ? PyDict_SetItem(dict, name, total) : -1;
    Py_XDECREF(total);
    Py_DECREF(name);
    return status;
}

static PyObject *count_dates(PyObject *self, PyObject *args) {
    Py_buffer buffer;
    PyObject *counts, *discards, *deferred;
    if (!PyArg_ParseTuple(args, "y*O!O!O!", &buffer, &PyDict_Type, &counts, &PyDict_Type,
                          &discards, &PyList_Type, &deferred))
        return NULL;
    const unsigned char *data = buffer.buf, *end = data + buffer.len, *line = data;
    const unsigned char *run_date = NULL;
    Py_ssize_t run_len = 0, run = 0, missing = 0, lines = 0;
    int failed = 0;
    for (;;) {
        const unsigned char *newline = memchr(line, '\n', end - line);
        const unsigned char *stop = newline ? newline : end;
        cursor c = {line, stop};
        const unsigned char *date = NULL;
        Py_ssize_t date_len = 0;
        lines++;
        switch (scan_line(&c, &date, &date_len)) {
        case COUNTED:
            if (run && date_len == run_len && memcmp(date, run_date, date_len) == 0) {
                run++;
            } else {
                if (run && add_count(counts, run_date, run_len, run) < 0) failed = 1;
                run_date = date;
                run_len = date_len;
                run = 1;
            }
            break;
        case MISSING:
            missing++;
            break;
        case DEFER: {
            PyObject *span = Py_BuildValue("(nn)", (Py_ssize_t)(line - data),
                                           (Py_ssize_t)(stop - data));
            if (span == NULL || PyList_Append(deferred, span) < 0) failed = 1;
            Py_XDECREF(span);
            break;
        }
        }
        if (failed || newline == NULL) break;
        line = newline + 1;
    }
    if (!failed && run && add_count(counts, run_date, run_len, run) < 0) failed = 1;
    if (!failed && missing && add_count(discards, (const unsigned char *)"missing time", 12,
                                        missing) < 0)
        failed = 1;
    PyBuffer_Release(&buffer);
    if (failed) return NULL;
    return PyLong_FromSsize_t(lines);
}

static PyMethodDef methods[] = {
    {"count_dates", count_dates, METH_VARARGS,
     "count_dates(block, counts, discards, deferred) -> lines\n\n"
     "Count the events of a block of lines per date; append (start, end) of every line the\n"
     "Python reference path must decide to `deferred`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastscan",
                                    "C fast path of pipeline.events.count_event_dates.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastscan(void) { return PyModule_Create(&module); }
