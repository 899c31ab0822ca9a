#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// libpng's simplified API wrapped so Swift calls one function each way; its macros
// (PNG_IMAGE_SIZE, the format flags) are usable only from C.

/// Decodes a PNG held in memory to 8-bit samples: gray (1 channel) or RGB (3), with
/// any alpha channel dropped (as PIL's convert("L"/"RGB") does; palettes expand to RGB).
/// `*pixels` is malloc'd (row-major, width·channels per row); free it. Returns 0 and
/// fills `message` on failure, including images over `max_values` samples.
static inline int kiln_png_decode(const unsigned char *data, size_t size, size_t max_values,
                                  unsigned *width, unsigned *height, int *channels,
                                  unsigned char **pixels, char *message, size_t message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    *pixels = NULL;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        snprintf(message, message_size, "%s", image.message);
        return 0;
    }
    int color = (image.format & PNG_FORMAT_FLAG_COLOR) != 0;
    image.format = color ? PNG_FORMAT_RGBA : PNG_FORMAT_GA;
    size_t in_channels = color ? 4 : 2, out_channels = color ? 3 : 1;
    if (image.width == 0 || image.height == 0 ||
        (size_t)image.width * image.height > max_values / in_channels) {
        snprintf(message, message_size, "%ux%u pixels is over the limit of %zu values", image.width, image.height, max_values);
        png_image_free(&image);
        return 0;
    }
    size_t count = (size_t)image.width * image.height;
    unsigned char *buffer = malloc(count * in_channels);
    if (buffer == NULL) {
        snprintf(message, message_size, "out of memory for %ux%u pixels", image.width, image.height);
        png_image_free(&image);
        return 0;
    }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        snprintf(message, message_size, "%s", image.message);
        free(buffer);
        png_image_free(&image);
        return 0;
    }
    // Drop alpha in place: each pixel's colour samples move down.
    for (size_t i = 0; i < count; i++)
        for (size_t c = 0; c < out_channels; c++) buffer[i * out_channels + c] = buffer[i * in_channels + c];
    *width = image.width;
    *height = image.height;
    *channels = (int)out_channels;
    *pixels = buffer;
    return 1;
}

/// Encodes 8-bit gray (1 channel), gray+alpha (2), RGB (3) or RGBA (4) pixels as a PNG.
/// `*out` is malloc'd; free it. Returns 0 on failure.
static inline int kiln_png_encode(const unsigned char *pixels, unsigned width, unsigned height, int channels,
                                  unsigned char **out, size_t *out_size) {
    static const png_uint_32 formats[] = {0, PNG_FORMAT_GRAY, PNG_FORMAT_GA, PNG_FORMAT_RGB, PNG_FORMAT_RGBA};
    if (channels < 1 || channels > 4) return 0;
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = formats[channels];
    png_alloc_size_t size = 0;
    if (!png_image_write_to_memory(&image, NULL, &size, 0, pixels, 0, NULL)) return 0;
    unsigned char *buffer = malloc(size);
    if (buffer == NULL) return 0;
    if (!png_image_write_to_memory(&image, buffer, &size, 0, pixels, 0, NULL)) { free(buffer); return 0; }
    *out = buffer;
    *out_size = size;
    return 1;
}
