package gen

import (
	"strconv"
	"time"
)

// appendCents writes an amount of cents as a decimal with two places.
func appendCents(dst []byte, c int64) []byte {
	if c < 0 {
		dst = append(dst, '-')
		c = -c
	}
	dst = strconv.AppendInt(dst, c/100, 10)
	f := c % 100
	return append(dst, '.', byte('0'+f/10), byte('0'+f%10))
}

func cents(v float64) int64 {
	if v <= 0 {
		return 0
	}
	return int64(v*100 + 0.5)
}

// appendTime writes epoch milliseconds as a JSON value: an integer when
// epoch is set, else an RFC 3339 string in the account's style.
func appendTime(dst []byte, ms int64, epoch bool, ac *account) []byte {
	if epoch {
		return strconv.AppendInt(dst, ms, 10)
	}
	dst = append(dst, '"')
	t := time.UnixMilli(ms).In(ac.loc)
	if ac.style == styleFraction {
		dst = t.AppendFormat(dst, time.RFC3339Nano)
	} else {
		dst = t.AppendFormat(dst, time.RFC3339)
	}
	return append(dst, '"')
}

// appendString writes s as a JSON string. Generated ids never need escapes.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendKey writes "name": preceded by a comma unless it is the first field.
func appendKey(dst []byte, name string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	return append(dst, '"', ':')
}
