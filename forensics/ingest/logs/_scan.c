/* Scan runs of log lines that all follow one layout, at C speed.

   Why hand-written: the layout check and number conversion of a 300-byte Megatron-LM line cost
   about 8 us in Python's `re` and 5.5 us in polars' `extract_groups` (measured, see
   docs/performance.md); this scan costs well under a microsecond. It does one thing: match lines
   of the form  L0 S1 L1 S2 ... Sk Lk \r* \n  (literal byte strings Li, number slots Si) from a
   byte offset on, and return each line's k numbers as doubles. It stops at the first line that
   does not follow the layout exactly; Python reads that line the ordinary way.

   Slot kinds (one byte each):
     'f' / 'F'  spaces (any / at least one), then a number as
                [-+]?((digits(.digits*)?|.digits)([eE][-+]?digits)?|nan|NaN|NAN|inf|Inf|INF)
     'u' / 'U'  spaces (any / at least one), then an unsigned plain decimal digits(.digits*)? | .digits
     'd' / 'D'  spaces (any / at least one), then 1 to 15 ASCII digits
   Numbers convert exactly as Python's float() does: Clinger's fast path (a mantissa of at most
   2**53 and a power of ten up to 1e22, one correctly rounded IEEE operation), then the same in
   long double with a midpoint check (`extended_convert`), otherwise PyOS_string_to_double, the
   function float() uses. NaN is the positive quiet NaN whatever its
   sign (as `to_float` gives). Every read is bounds-checked against the buffer. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <string.h>

static const double POW10[23] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* The first byte at or after p that is not a space. Megatron pads its numbers with up to a dozen
   spaces: eight bytes at a time, the lowest set bit of chunk ^ "        " is in the first non-space
   byte (little-endian). */
static const char *skip_spaces(const char *p, const char *limit) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (limit - p >= 8) {
        unsigned long long chunk;
        memcpy(&chunk, p, 8);
        chunk ^= 0x2020202020202020ULL;
        if (chunk) return p + (__builtin_ctzll(chunk) >> 3);
        p += 8;
    }
#endif
    while (p < limit && *p == ' ') p++;
    return p;
}

/* The end of the run of ASCII digits at p, eight bytes at a time: a byte is a digit when its high
   nibble, and that of the byte plus 6, are both 3 (a carry out of a non-digit byte only changes the
   bytes after it, which do not count). */
static const char *skip_digits(const char *p, const char *limit) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const unsigned long long high = 0xF0F0F0F0F0F0F0F0ULL, threes = 0x3030303030303030ULL;
    while (limit - p >= 8) {
        unsigned long long chunk;
        memcpy(&chunk, p, 8);
        unsigned long long odd = ((chunk & high) ^ threes) | (((chunk + 0x0606060606060606ULL) & high) ^ threes);
        if (odd) return p + (__builtin_ctzll(odd) >> 3);
        p += 8;
    }
#endif
    while (p < limit && is_digit(*p)) p++;
    return p;
}

/* Convert the token [start, end) with float()'s own parser; 0 on success. */
static int slow_convert(const char *start, const char *end, double *out) {
    Py_ssize_t length = end - start;
    char small[64];
    char *copy = length < 64 ? small : (char *)PyMem_Malloc(length + 1);
    if (copy == NULL) {
        PyErr_Clear();
        return -1;
    }
    memcpy(copy, start, length);
    copy[length] = '\0';
    char *stop = NULL;
    double value = PyOS_string_to_double(copy, &stop, NULL);
    int ok = !(value == -1.0 && PyErr_Occurred()) && stop == copy + length;
    if (PyErr_Occurred()) PyErr_Clear();
    if (copy != small) PyMem_Free(copy);
    if (!ok) return -1;
    *out = value;
    return 0;
}

/* m * 10**power correctly rounded, through the x87/quad long double: for mantissas above 2**53
   (17-digit reprs such as 1.9999960000000002e-05). The long double result is correctly rounded to
   LDBL_MANT_DIG bits; rounding it to a double gives the correctly rounded double unless it sits
   exactly on a midpoint between two doubles (then the true value may lie on either side: -1, and
   float()'s parser decides). Midpoints are the only long doubles within half a long-double ulp of
   a rounding boundary, so every other case is exact. */
static int extended_convert(unsigned long long mantissa, long power, double *out) {
#if LDBL_MANT_DIG >= 64
    if (power < -27 || power > 27) return -1;  /* 10**27 is exact in a 64-bit mantissa */
    long double scale = 1.0L;
    for (long i = 0; i < (power < 0 ? -power : power); i++) scale *= 10.0L;
    long double value = power < 0 ? (long double)mantissa / scale : (long double)mantissa * scale;
    int exponent;
    long double bits = ldexpl(frexpl(value, &exponent), LDBL_MANT_DIG);
    if (fmodl(bits, ldexpl(1.0L, LDBL_MANT_DIG - 53)) == ldexpl(1.0L, LDBL_MANT_DIG - 54)) return -1;
    *out = (double)value;
    return 0;
#else
    (void)mantissa;
    (void)power;
    (void)out;
    return -1;
#endif
}

/* A decimal number (no nan/inf) at *cursor, optionally signed, optionally with an exponent.
   Returns 0 and advances *cursor past it, or -1 when there is none. */
static int parse_decimal(const char **cursor, const char *limit, int allow_sign, int allow_exponent, double *out) {
    const char *p = *cursor, *start = p;
    int negative = 0;
    if (allow_sign && p < limit && (*p == '+' || *p == '-')) {
        negative = *p == '-';
        p++;
    }
    /* Find the digits first, then convert the significant ones in loops without checks. */
    const char *int_start = p;
    p = skip_digits(p, limit);
    const char *int_end = p, *frac_start = p, *frac_end = p;
    if (p < limit && *p == '.') {
        frac_start = ++p;
        p = frac_end = skip_digits(p, limit);
        if (int_end == int_start && frac_end == frac_start) return -1;
    } else if (int_end == int_start) {
        return -1;
    }
    const char *lead = int_start, *frac_lead = frac_start;  /* the first significant digit */
    while (lead < int_end && *lead == '0') lead++;
    if (lead == int_end)
        while (frac_lead < frac_end && *frac_lead == '0') frac_lead++;
    long frac_digits = (long)(frac_end - frac_start);
    int exactable = (int_end - lead) + (frac_end - frac_lead) <= 19;
    unsigned long long mantissa = 0;
    if (exactable) {
        for (const char *q = lead; q < int_end; q++) mantissa = mantissa * 10 + (unsigned)(*q - '0');
        for (const char *q = frac_lead; q < frac_end; q++) mantissa = mantissa * 10 + (unsigned)(*q - '0');
    }
    long exponent = 0;
    if (allow_exponent && p < limit && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        int exponent_negative = 0, exponent_digits = 0;
        if (q < limit && (*q == '+' || *q == '-')) {
            exponent_negative = *q == '-';
            q++;
        }
        while (q < limit && is_digit(*q)) {
            if (exponent_digits < 6) exponent = exponent * 10 + (*q - '0');
            else exactable = 0;
            exponent_digits++;
            q++;
        }
        if (exponent_digits) {  /* else the 'e' is not part of the number */
            p = q;
            if (exponent_negative) exponent = -exponent;
        }
    }
    long power = exponent - frac_digits;
    double value;
    if (exactable && mantissa == 0) {
        value = 0.0;
    } else if (exactable && mantissa <= (1ULL << 53) && power >= -22 && power <= 22) {
        /* Clinger's fast path: both operands exact, one correctly rounded operation */
        value = power < 0 ? (double)mantissa / POW10[-power] : (double)mantissa * POW10[power];
    } else if (exactable && extended_convert(mantissa, power, &value) == 0) {
        /* done */
    } else if (slow_convert(start + (allow_sign && (*start == '+' || *start == '-')), p, &value) != 0) {
        return -1;
    }
    *out = negative ? -value : value;
    *cursor = p;
    return 0;
}

static int word_at(const char *p, const char *limit, const char *word) {
    Py_ssize_t length = (Py_ssize_t)strlen(word);
    return limit - p >= length && memcmp(p, word, length) == 0;
}

/* One slot at *cursor; 0 and the value on success. */
static int parse_slot(char kind, const char **cursor, const char *limit, double *out) {
    const char *p = skip_spaces(*cursor, limit);
    if ((kind == 'F' || kind == 'D' || kind == 'U') && p == *cursor) return -1;
    if (kind == 'd' || kind == 'D') {
        const char *end = skip_digits(p, limit);
        if (end == p || end - p > 15) return -1;
        double value = 0.0;  /* exact: 15 digits stay below 2**53 */
        for (const char *q = p; q < end; q++) value = value * 10.0 + (*q - '0');
        *out = value;
        *cursor = end;
        return 0;
    }
    if (kind == 'u' || kind == 'U') {
        if (parse_decimal(&p, limit, 0, 0, out) != 0) return -1;
        *cursor = p;
        return 0;
    }
    /* 'f' / 'F' */
    const char *word = p;
    int negative = 0;
    if (word < limit && (*word == '+' || *word == '-')) {
        negative = *word == '-';
        word++;
    }
    if (word < limit && (*word == 'n' || *word == 'N' || *word == 'i' || *word == 'I')) {
        if (word_at(word, limit, "nan") || word_at(word, limit, "NaN") || word_at(word, limit, "NAN")) {
            *out = Py_NAN;
            *cursor = word + 3;
            return 0;
        }
        if (word_at(word, limit, "inf") || word_at(word, limit, "Inf") || word_at(word, limit, "INF")) {
            *out = negative ? -Py_HUGE_VAL : Py_HUGE_VAL;
            *cursor = word + 3;
            return 0;
        }
        return -1;
    }
    if (parse_decimal(&p, limit, 1, 1, out) != 0) return -1;
    *cursor = p;
    return 0;
}

/* scan(data, start, literals, kinds, max_lines, max_line_bytes)
   -> (lines, end offset, values as bytes of float64, line ends as bytes of int64) */
static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, max_lines, max_line_bytes;
    PyObject *literals;
    const char *kinds;
    Py_ssize_t kind_count;
    if (!PyArg_ParseTuple(args, "y*nO!y#nn", &view, &start, &PyTuple_Type, &literals, &kinds, &kind_count,
                          &max_lines, &max_line_bytes))
        return NULL;
    if (PyTuple_GET_SIZE(literals) != kind_count + 1 || kind_count > 256 || start < 0 || start > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan: literals must be one more than the slots; start inside the data");
        return NULL;
    }
    const char *pieces[257];
    Py_ssize_t lengths[257];
    for (Py_ssize_t i = 0; i <= kind_count; i++) {
        PyObject *piece = PyTuple_GET_ITEM(literals, i);
        if (!PyBytes_Check(piece)) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "scan: literals must be bytes");
            return NULL;
        }
        pieces[i] = PyBytes_AS_STRING(piece);
        lengths[i] = PyBytes_GET_SIZE(piece);
    }
    const char *base = (const char *)view.buf, *limit = base + view.len, *line = base + start;
    /* Every line holds its literals, one byte per slot and its newline: a bound on the lines here. */
    Py_ssize_t shortest = kind_count + 1;
    for (Py_ssize_t i = 0; i <= kind_count; i++) shortest += lengths[i];
    Py_ssize_t bound = (limit - line) / shortest + 1;
    if (bound > max_lines) bound = max_lines;
    if (bound < 0) bound = 0;
    PyObject *values = PyBytes_FromStringAndSize(NULL, bound * kind_count * (Py_ssize_t)sizeof(double));
    PyObject *ends = PyBytes_FromStringAndSize(NULL, bound * (Py_ssize_t)sizeof(long long));
    if (values == NULL || ends == NULL) {
        Py_XDECREF(values);
        Py_XDECREF(ends);
        PyBuffer_Release(&view);
        return NULL;
    }
    double *row = (double *)PyBytes_AS_STRING(values);
    long long *line_end = (long long *)PyBytes_AS_STRING(ends);
    Py_ssize_t lines = 0;
    while (lines < bound && line < limit) {
        const char *p = line;
        int ok = 1;
        for (Py_ssize_t i = 0; i <= kind_count; i++) {
            Py_ssize_t length = lengths[i];
            if (limit - p < length || (length && (p[0] != pieces[i][0] || memcmp(p, pieces[i], length) != 0))) {
                ok = 0;
                break;
            }
            p += length;
            if (i < kind_count && parse_slot(kinds[i], &p, limit, &row[i]) != 0) {
                ok = 0;
                break;
            }
        }
        if (!ok) break;
        while (p < limit && *p == '\r') p++;
        if (p >= limit || *p != '\n' || p - line > max_line_bytes) break;
        p++;
        line_end[lines++] = (long long)(p - base);
        row += kind_count;
        line = p;
    }
    Py_ssize_t end = line - base;
    PyBuffer_Release(&view);
    if (_PyBytes_Resize(&values, lines * kind_count * (Py_ssize_t)sizeof(double)) != 0 ||
        _PyBytes_Resize(&ends, lines * (Py_ssize_t)sizeof(long long)) != 0) {
        Py_XDECREF(values);
        Py_XDECREF(ends);
        return NULL;
    }
    return Py_BuildValue("nnNN", lines, end, values, ends);
}

static PyMethodDef METHODS[] = {
    {"scan", scan, METH_VARARGS, "Scan lines of one layout: (lines, end, float64 values, int64 line ends)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_scan", "Layout scanner for log lines.", -1, METHODS};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&MODULE); }
