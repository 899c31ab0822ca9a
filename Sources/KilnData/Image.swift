// PNG and JPEG images, decoded with libpng and libjpeg.
import CJPEG
import CPNG
import Foundation

/// One decoded image: 8-bit samples, row-major, `channels` per pixel (1 gray, 3 RGB).
public struct DecodedImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "\(width)x\(height)x\(channels) image needs \(width * height * channels) samples")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The per-sample shape of the image as a data row: [height, width, channels].
    public var shape: [Int] { [height, width, channels] }
}

public enum ImageCodec {
    public enum Format: String, Sendable { case png = "PNG", jpeg = "JPEG" }

    /// The format announced by the file's first bytes, if it is one of ours.
    public static func format(of bytes: [UInt8]) -> Format? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// Decodes a PNG or JPEG (chosen by magic bytes) to gray or RGB 8-bit samples; an
    /// alpha channel is dropped, a palette expanded to RGB.
    /// - Throws: `DatasetError` naming `name`, the format it was read as and libpng's or
    ///   libjpeg's reason.
    public static func decode(_ bytes: [UInt8], name: String, maxValues: Int = 1 << 28) throws(DatasetError) -> DecodedImage {
        guard let format = format(of: bytes) else {
            throw DatasetError(field: name, "not a PNG or JPEG image (its first bytes are neither PNG's nor JPEG's signature)")
        }
        var width: UInt32 = 0, height: UInt32 = 0
        var channels: Int32 = 0
        var pixels: UnsafeMutablePointer<UInt8>?
        var message = [CChar](repeating: 0, count: 256)
        let ok = bytes.withUnsafeBufferPointer { b in
            message.withUnsafeMutableBufferPointer { m in
                switch format {
                case .png:
                    return kiln_png_decode(b.baseAddress, b.count, maxValues, &width, &height, &channels, &pixels, m.baseAddress, m.count)
                case .jpeg:
                    return kiln_jpeg_decode(b.baseAddress, UInt(b.count), maxValues, &width, &height, &channels, &pixels, m.baseAddress, m.count)
                }
            }
        }
        guard ok != 0, let pixels else {
            let why = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw DatasetError(field: name, "read as \(format.rawValue): \(why.isEmpty ? "the image is corrupt" : why)")
        }
        defer { free(pixels) }
        let count = Int(width) * Int(height) * Int(channels)
        return DecodedImage(width: Int(width), height: Int(height), channels: Int(channels),
                            pixels: Array(UnsafeBufferPointer(start: pixels, count: count)))
    }

    /// Encodes an image as PNG (lossless).
    public static func encodePNG(_ image: DecodedImage) -> [UInt8]? {
        var out: UnsafeMutablePointer<UInt8>?
        var size = 0
        let ok = image.pixels.withUnsafeBufferPointer { p in
            kiln_png_encode(p.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels), &out, &size)
        }
        guard ok != 0, let out else { return nil }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: size))
    }

    /// Encodes a gray or RGB image as a baseline JPEG of `quality` (1–100).
    public static func encodeJPEG(_ image: DecodedImage, quality: Int = 90) -> [UInt8]? {
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let ok = image.pixels.withUnsafeBufferPointer { p in
            kiln_jpeg_encode(p.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels), Int32(quality), &out, &size)
        }
        guard ok != 0, let out else { return nil }
        defer { free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(size)))
    }
}
