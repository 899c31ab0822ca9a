// NumPy .npz files: zip archives of .npy members (np.savez stores them, np.savez_compressed
// deflates them). The central directory is authoritative for names and sizes, since
// numpy may write local headers with zip64 placeholders or data descriptors.
import CZlib

public enum NPZ {
    /// Cap on the total decompressed size of all members.
    public static let defaultMaxOutputBytes = 1 << 30

    /// Parses an .npz archive into fields named after the members without `.npy`.
    /// Members are stored (method 0) or deflated (method 8); CRC-32s are verified.
    public static func parse(_ bytes: [UInt8]) throws(DatasetError) -> [String: DataArray] {
        try parse(bytes, maxOutputBytes: defaultMaxOutputBytes)
    }

    public static func parse(_ bytes: [UInt8], maxOutputBytes: Int) throws(DatasetError) -> [String: DataArray] {
        let r: Result<[String: DataArray], DatasetError> = bytes.withUnsafeBytes { buf in
            do throws(DatasetError) { return .success(try parse(buf, maxOutputBytes: maxOutputBytes)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    static func parse(_ z: UnsafeRawBufferPointer, maxOutputBytes: Int) throws(DatasetError) -> [String: DataArray] {
        let file = "npz archive"
        var fields = [String: DataArray]()
        var totalOut = 0
        for (field, entry) in try arrayMembers(try Zip.entries(z, archive: file), archive: file) {
            let member = try Zip.read(z, entry, field: field, archive: file, totalOut: &totalOut, maxOutputBytes: maxOutputBytes)
            fields[field] = try NPY.parse(member, name: field)
        }
        return fields
    }

    /// The archive's `.npy` members in order, each with its field name (the member's base
    /// name without `.npy`); directories are skipped, anything else is refused.
    static func arrayMembers(_ entries: [Zip.Entry], archive file: String) throws(DatasetError) -> [(field: String, entry: Zip.Entry)] {
        func fail(_ why: String) -> DatasetError { DatasetError(field: file, why) }
        var members: [(field: String, entry: Zip.Entry)] = []
        var seen = Set<String>()
        for entry in entries {
            if entry.name.hasSuffix("/") { continue } // directory
            guard entry.name.hasSuffix(".npy") else {
                throw fail("member '\(entry.name)' is not a .npy array")
            }
            var fieldName = String(entry.name.dropLast(4))
            // Fields are named after the member's base name.
            if let slash = fieldName.lastIndex(of: "/") { fieldName = String(fieldName[fieldName.index(after: slash)...]) }
            guard !fieldName.isEmpty else { throw fail("member '\(entry.name)' has an empty name") }
            guard seen.insert(fieldName).inserted else { throw fail("duplicate member '\(entry.name)'") }
            members.append((fieldName, entry))
        }
        guard !members.isEmpty else { throw fail("archive holds no .npy arrays") }
        return members
    }
}
