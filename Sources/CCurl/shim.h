#include <curl/curl.h>

// curl_easy_setopt is variadic, which Swift cannot call; these wrappers fix the types.
static inline CURLcode kiln_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode kiln_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode kiln_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*kiln_curl_write_callback)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode kiln_curl_setopt_write_function(CURL *handle, kiln_curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
}
static inline CURLcode kiln_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
