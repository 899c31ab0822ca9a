#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

// libjpeg reports errors by calling error_exit, which must not return; these wrappers
// turn that into a return code with setjmp/longjmp, which Swift cannot do itself.

struct kiln_jpeg_error {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static inline void kiln_jpeg_fail(j_common_ptr info) {
    struct kiln_jpeg_error *error = (struct kiln_jpeg_error *)info->err;
    (*info->err->format_message)(info, error->message);
    longjmp(error->jump, 1);
}

/// Warnings (a corrupt but readable file) are not printed.
static inline void kiln_jpeg_quiet(j_common_ptr info) { (void)info; }

/// Decodes a JPEG held in memory to 8-bit gray (1 channel) or RGB (3). CMYK files are
/// refused. `*pixels` is malloc'd (row-major); free it. Returns 0 and fills `message`
/// on failure, including images over `max_values` samples.
static inline int kiln_jpeg_decode(const unsigned char *data, unsigned long size, size_t max_values,
                                   unsigned *width, unsigned *height, int *channels,
                                   unsigned char **pixels, char *message, size_t message_size) {
    struct jpeg_decompress_struct info;
    struct kiln_jpeg_error error;
    unsigned char *volatile buffer = NULL;
    *pixels = NULL;
    info.err = jpeg_std_error(&error.base);
    error.base.error_exit = kiln_jpeg_fail;
    error.base.output_message = kiln_jpeg_quiet;
    error.message[0] = 0;
    if (setjmp(error.jump)) {
        snprintf(message, message_size, "%s", error.message);
        jpeg_destroy_decompress(&info);
        free(buffer);
        return 0;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, size);
    jpeg_read_header(&info, TRUE);
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(message, message_size, "CMYK JPEGs are not supported; save it as RGB");
        jpeg_destroy_decompress(&info);
        return 0;
    }
    info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_calc_output_dimensions(&info);
    size_t samples = (size_t)info.output_width * info.output_components;
    if (info.output_width == 0 || info.output_height == 0 || samples > max_values / info.output_height) {
        snprintf(message, message_size, "%ux%u pixels is over the limit of %zu values", info.output_width, info.output_height, max_values);
        jpeg_destroy_decompress(&info);
        return 0;
    }
    jpeg_start_decompress(&info);
    buffer = malloc(samples * info.output_height);
    if (buffer == NULL) {
        snprintf(message, message_size, "out of memory");
        jpeg_destroy_decompress(&info);
        return 0;
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = buffer + (size_t)info.output_scanline * samples;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    *width = info.output_width;
    *height = info.output_height;
    *channels = info.output_components;
    *pixels = buffer;
    jpeg_destroy_decompress(&info);
    return 1;
}

/// Encodes 8-bit gray (1 channel) or RGB (3) pixels as a baseline JPEG of `quality`
/// (1–100). `*out` is malloc'd; free it. Returns 0 on failure.
static inline int kiln_jpeg_encode(const unsigned char *pixels, unsigned width, unsigned height, int channels, int quality,
                                   unsigned char **out, unsigned long *out_size) {
    struct jpeg_compress_struct info;
    struct kiln_jpeg_error error;
    unsigned char *buffer = NULL;
    unsigned long size = 0;
    if (channels != 1 && channels != 3) return 0;
    info.err = jpeg_std_error(&error.base);
    error.base.error_exit = kiln_jpeg_fail;
    error.base.output_message = kiln_jpeg_quiet;
    if (setjmp(error.jump)) {
        jpeg_destroy_compress(&info);
        return 0;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &buffer, &size);
    info.image_width = width;
    info.image_height = height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)info.next_scanline * width * channels);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *out = buffer;
    *out_size = size;
    return 1;
}
