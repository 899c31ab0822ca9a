// KilnHTTP
