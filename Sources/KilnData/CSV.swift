// CSV uploads (RFC 4180): a header row naming the columns, then one row per example.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum CSV {
    /// Field holding every column but the label, in header order: [rows, columns].
    public static let featuresField = "features"
    /// Field holding the label column: [rows].
    public static let labelField = "label"

    /// Reads a CSV table whose cells are all numbers.
    ///
    /// The column named `label` (or `labelColumn`, when given) becomes the field
    /// `label` (int32 when every value is a whole number, else float32); every other
    /// column goes, in header order, into the float32 field `features` [rows, columns].
    /// Without a label column, all columns are features. Quoted cells (`"15"`), CRLF or
    /// LF line ends, a UTF-8 byte-order mark and a last line without its line end are
    /// accepted; blank lines are skipped. Numbers are parsed from the bytes, without a
    /// string per cell.
    /// - Throws: `DatasetError` naming the line and column (1-based, with the column's
    ///   name) of the first cell that is not a finite number, or the row whose cell count
    ///   differs from the header's.
    public static func parse(_ bytes: [UInt8], labelColumn: String? = nil) throws(DatasetError) -> [String: DataArray] {
        let r: Result<[String: DataArray], DatasetError> = bytes.withUnsafeBufferPointer { b in
            do throws(DatasetError) { return .success(try parse(b, labelColumn: labelColumn)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>, labelColumn: String?) throws(DatasetError) -> [String: DataArray] {
        var cells = Cells(bytes)
        // The header: the first record that is not blank.
        var names: [String] = []
        var headerLine = 1
        while names.isEmpty || (names.count == 1 && names[0].isEmpty) {
            guard !cells.atEnd else { throw DatasetError(field: "csv", "the file is empty; the first line must name the columns") }
            names = []
            headerLine = cells.line
            while let cell = try cells.next() {
                names.append(cell.withBytes { String(decoding: $0, as: UTF8.self) }.trimmingSpaces)
                if cell.lastInRecord { break }
            }
        }
        for (j, name) in names.enumerated() where name.isEmpty {
            throw DatasetError(field: "csv", "line \(headerLine), column \(j + 1): the header names no column; the first line must name every column")
        }
        var labelIndex: Int?
        if let wanted = labelColumn {
            guard let i = names.firstIndex(of: wanted) else {
                throw DatasetError(field: "csv", "no column named '\(wanted)' for the label; the header has \(names.joined(separator: ", "))")
            }
            labelIndex = i
        } else {
            labelIndex = names.firstIndex(of: labelField)
        }

        let featureCount = names.count - (labelIndex == nil ? 0 : 1)
        var features = [Float]()
        var labels = [Float]()
        var wholeLabels = true
        var rows = 0
        var column = 0
        var rowLine = cells.line
        while let cell = try cells.next() {
            if column == 0 {
                rowLine = cell.line
                // A blank line is no record.
                if cell.lastInRecord && cell.isEmpty && !cell.quoted { continue }
            }
            guard column < names.count else {
                throw DatasetError(field: "csv", "line \(rowLine): more cells than the header's \(names.count) columns")
            }
            guard let value = cell.withBytes(number) else {
                let text = cell.withBytes { String(decoding: $0, as: UTF8.self) }.trimmingSpaces
                let shown = text.isEmpty ? "an empty cell" : "'\(text.prefix(40))'"
                throw DatasetError(field: "csv", "line \(rowLine), column \(column + 1) ('\(names[column])'): \(shown) is not a number; every cell must be a finite number")
            }
            if column == labelIndex {
                labels.append(Float(value))
                if value.rounded() != value { wholeLabels = false }
            } else {
                features.append(Float(value))
            }
            column += 1
            if cell.lastInRecord {
                guard column == names.count else {
                    throw DatasetError(field: "csv", "line \(rowLine): \(column) cells but the header names \(names.count) columns")
                }
                rows += 1
                column = 0
            }
        }
        if column > 0 {
            throw DatasetError(field: "csv", "line \(rowLine): \(column) cells but the header names \(names.count) columns")
        }
        guard rows > 0 else { throw DatasetError(field: "csv", "the file has a header but no rows") }
        var fields: [String: DataArray] = [:]
        if featureCount > 0 {
            fields[featuresField] = DataArray(shape: [rows, featureCount], dtype: .float32, values: features)
        }
        if labelIndex != nil {
            fields[labelField] = DataArray(shape: [rows], dtype: wholeLabels ? .int32 : .float32, values: labels)
        }
        return fields
    }

    /// A finite number that fits a Float, from a cell's bytes (spaces and tabs around
    /// it allowed): decimal notation only — no hex, `inf` or `nan`.
    static func number(_ cell: UnsafeBufferPointer<UInt8>) -> Double? {
        var lo = 0, hi = cell.count
        while lo < hi, cell[lo] == 0x20 || cell[lo] == 0x09 { lo += 1 }
        while hi > lo, cell[hi - 1] == 0x20 || cell[hi - 1] == 0x09 { hi -= 1 }
        guard lo < hi, hi - lo < 64 else { return nil }
        // Whole numbers of up to 15 digits, the usual cell, directly.
        var i = lo
        let negative = cell[i] == UInt8(ascii: "-")
        if negative || cell[i] == UInt8(ascii: "+") { i += 1 }
        if i < hi, hi - i <= 15 {
            var n: Int64 = 0
            var j = i
            while j < hi, cell[j] >= 0x30, cell[j] <= 0x39 { n = n * 10 + Int64(cell[j] - 0x30); j += 1 }
            if j == hi { return Double(negative ? -n : n) }
        }
        // Anything else through strtod, after checking it is plain decimal notation.
        var text = [CChar](repeating: 0, count: hi - lo + 1)
        for k in lo..<hi {
            let c = cell[k]
            guard (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") else { return nil }
            text[k - lo] = CChar(bitPattern: c)
        }
        var end: UnsafeMutablePointer<CChar>?
        let value = text.withUnsafeMutableBufferPointer { t -> Double? in
            let v = strtod(t.baseAddress!, &end)
            return end == t.baseAddress! + (hi - lo) ? v : nil
        }
        guard let value, value.isFinite, Swift.abs(value) <= Double(Float.greatestFiniteMagnitude) else { return nil }
        return value
    }

    /// Walks the cells of a CSV text one at a time.
    struct Cells {
        struct Cell {
            /// The cell's text in the input, or, for a quoted cell with doubled quotes,
            /// its unescaped copy in `unescaped`.
            var span: UnsafeBufferPointer<UInt8>
            var unescaped: [UInt8]? = nil
            var quoted: Bool
            var lastInRecord: Bool
            /// The line the cell starts on.
            var line: Int

            func withBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
                guard let unescaped else { return body(span) }
                return unescaped.withUnsafeBufferPointer(body)
            }
            var isEmpty: Bool { span.isEmpty && (unescaped?.isEmpty ?? true) }
        }

        let bytes: UnsafeBufferPointer<UInt8>
        var index: Int
        var line = 1
        /// A comma ended the text: one empty cell is still to come.
        var trailingEmpty = false

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            index = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        }

        var atEnd: Bool { index >= bytes.count }

        /// The next cell, or nil at the end of the text.
        mutating func next() throws(DatasetError) -> Cell? {
            guard index < bytes.count else {
                guard trailingEmpty else { return nil }
                trailingEmpty = false
                return Cell(span: UnsafeBufferPointer(rebasing: bytes[bytes.count...]), quoted: false, lastInRecord: true, line: line)
            }
            let startLine = line
            var i = index
            // Spaces before an opening quote are allowed.
            var k = i
            while k < bytes.count, bytes[k] == 0x20 || bytes[k] == 0x09 { k += 1 }
            var cell: UnsafeBufferPointer<UInt8>
            var unescaped: [UInt8]?
            var quoted = false
            if k < bytes.count, bytes[k] == UInt8(ascii: "\"") {
                quoted = true
                i = k + 1
                let start = i
                var escaped = false
                while true {
                    guard i < bytes.count else {
                        throw DatasetError(field: "csv", "line \(startLine): a quoted cell is not closed before the end of the file")
                    }
                    if bytes[i] == UInt8(ascii: "\"") {
                        if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") { escaped = true; i += 2; continue }
                        break
                    }
                    if bytes[i] == 0x0A { line += 1 }
                    i += 1
                }
                cell = UnsafeBufferPointer(rebasing: bytes[start..<i])
                if escaped {
                    var copy: [UInt8] = []
                    var j = start
                    while j < i { copy.append(bytes[j]); j += bytes[j] == UInt8(ascii: "\"") ? 2 : 1 }
                    unescaped = copy
                }
                i += 1  // the closing quote
                while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                guard i >= bytes.count || bytes[i] == UInt8(ascii: ",") || bytes[i] == 0x0A || bytes[i] == 0x0D else {
                    throw DatasetError(field: "csv", "line \(line): text after a quoted cell's closing quote")
                }
            } else {
                let start = i
                while i < bytes.count, bytes[i] != UInt8(ascii: ","), bytes[i] != 0x0A {
                    if bytes[i] == UInt8(ascii: "\"") {
                        throw DatasetError(field: "csv", "line \(line): a quote inside an unquoted cell")
                    }
                    i += 1
                }
                var end = i
                if end > start, bytes[end - 1] == 0x0D, i >= bytes.count || bytes[i] == 0x0A { end -= 1 }
                cell = UnsafeBufferPointer(rebasing: bytes[start..<end])
            }
            // After the cell: a comma, a line end (CRLF or LF), or the end of the text.
            var last = true
            if i < bytes.count {
                if bytes[i] == UInt8(ascii: ",") {
                    last = false
                    i += 1
                    // A comma at the end of the text leaves one empty cell.
                    if i >= bytes.count { trailingEmpty = true }
                } else {
                    if bytes[i] == 0x0D { i += 1 }
                    if i < bytes.count, bytes[i] == 0x0A { i += 1 }
                    line += 1
                }
            }
            index = i
            return Cell(span: cell, unescaped: unescaped, quoted: quoted, lastInRecord: last, line: startLine)
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(scalars[first...last])
    }
}
