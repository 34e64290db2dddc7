//! The few ONNX protobuf messages an exported network needs, encoded by hand
//! (field numbers from onnx.proto3): a message is a byte buffer its fields are
//! appended to.

/// Protobuf wire types.
const VARINT: u64 = 0;
const FIXED32: u64 = 5;
const LEN: u64 = 2;

#[derive(Default, Clone)]
pub struct Msg(pub Vec<u8>);

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn key(&mut self, field: u64, wire: u64) {
        varint(field << 3 | wire, &mut self.0);
    }
    /// An int64, int32 or enum field (negative values as ten-byte varints, as protobuf does).
    pub fn int(&mut self, field: u64, v: i64) -> &mut Self {
        self.key(field, VARINT);
        varint(v as u64, &mut self.0);
        self
    }
    pub fn float(&mut self, field: u64, v: f32) -> &mut Self {
        self.key(field, FIXED32);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, field: u64, data: &[u8]) -> &mut Self {
        self.key(field, LEN);
        varint(data.len() as u64, &mut self.0);
        self.0.extend_from_slice(data);
        self
    }
    pub fn string(&mut self, field: u64, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(&mut self, field: u64, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    /// A repeated int64 field, packed.
    pub fn packed_ints(&mut self, field: u64, values: &[i64]) -> &mut Self {
        let mut body = Vec::new();
        for &v in values {
            varint(v as u64, &mut body);
        }
        self.bytes(field, &body)
    }
}

/// TensorProto.DataType values.
pub const FLOAT: i64 = 1;
pub const INT64: i64 = 7;

/// `TensorProto { dims = 1; data_type = 2; name = 8; raw_data = 9 }`, little-endian raw data.
pub fn tensor(name: &str, dims: &[i64], data_type: i64, raw: &[u8]) -> Msg {
    let mut t = Msg::default();
    t.packed_ints(1, dims).int(2, data_type).string(8, name).bytes(9, raw);
    t
}

/// One dimension of a shape: a fixed size or a named, free one (the batch).
pub enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// `ValueInfoProto { name = 1; type = 2 }` of a float tensor of `dims`:
/// `TypeProto { tensor_type = 1 }`, `Tensor { elem_type = 1; shape = 2 }`,
/// `TensorShapeProto { dim = 1 }`, `Dimension { dim_value = 1 | dim_param = 2 }`.
pub fn value_info(name: &str, dims: &[Dim]) -> Msg {
    let mut shape = Msg::default();
    for d in dims {
        let mut dim = Msg::default();
        match d {
            Dim::Fixed(v) => dim.int(1, *v),
            Dim::Named(p) => dim.string(2, p),
        };
        shape.msg(1, &dim);
    }
    let mut tensor_type = Msg::default();
    tensor_type.int(1, FLOAT).msg(2, &shape);
    let mut type_proto = Msg::default();
    type_proto.msg(1, &tensor_type);
    let mut info = Msg::default();
    info.string(1, name).msg(2, &type_proto);
    info
}

/// An attribute's value.
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

/// `AttributeProto { name = 1; f = 2; i = 3; ints = 8; type = 20 }` (FLOAT 1, INT 2, INTS 7).
pub fn attribute(name: &str, value: &Attr) -> Msg {
    let mut a = Msg::default();
    a.string(1, name);
    match value {
        Attr::Float(f) => a.float(2, *f).int(20, 1),
        Attr::Int(i) => a.int(3, *i).int(20, 2),
        Attr::Ints(v) => a.packed_ints(8, v).int(20, 7),
    };
    a
}

/// `NodeProto { input = 1; output = 2; name = 3; op_type = 4; attribute = 5 }`.
pub fn node(op_type: &str, name: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> Msg {
    let mut n = Msg::default();
    for i in inputs {
        n.string(1, i);
    }
    n.string(2, output).string(3, name).string(4, op_type);
    for (key, value) in attrs {
        n.msg(5, &attribute(key, value));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_encode_as_protobuf_does() {
        // Field 1 varint 150: the protobuf documentation's example, 08 96 01.
        assert_eq!(Msg::default().int(1, 150).0, [0x08, 0x96, 0x01]);
        // A negative int64 takes ten bytes.
        assert_eq!(Msg::default().int(3, -1).0.len(), 11);
        assert_eq!(Msg::default().string(2, "testing").0, [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']);
        assert_eq!(Msg::default().packed_ints(4, &[3, 270, 86942]).0, [0x22, 0x06, 0x03, 0x8E, 0x02, 0x9E, 0xA7, 0x05]);
        assert_eq!(Msg::default().float(2, 1.0).0, [0x15, 0x00, 0x00, 0x80, 0x3F]);
    }
}
