TinyEncoder
class TinyEncoder(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  tokens : __torch__.torch.nn.modules.sparse.Embedding
  positions : __torch__.torch.nn.modules.sparse.___torch_mangle_7.Embedding
  layers : __torch__.torch.nn.modules.container.ModuleList
  def forward(self: __torch__.TinyEncoder,
    input_ids: Tensor,
    attention_mask: Tensor) -> Tensor:
    seq = (torch.size(input_ids))[1]
    _0 = torch.arange(seq, dtype=None, layout=None, device=ops.prim.device(input_ids))
    pos = torch.unsqueeze(_0, 0)
    tokens = self.tokens
    _1 = (tokens).forward(input_ids, )
    positions = self.positions
    x = torch.add(_1, (positions).forward(pos, ))
    _2 = torch.to(attention_mask, ops.prim.dtype(x))
    _3 = torch.unsqueeze(torch.add(torch.neg(_2), 1.), 1)
    bias = torch.mul(torch.unsqueeze(_3, 2), -10000.)
    layers = self.layers
    _00 = getattr(layers, "0")
    _10 = getattr(layers, "1")
    x0 = (_00).forward(x, bias, )
    return (_10).forward(x0, bias, )
class EncoderLayer(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  heads : int
  head_dim : int
  qkv : __torch__.torch.nn.modules.linear.___torch_mangle_8.Linear
  proj : __torch__.torch.nn.modules.linear.___torch_mangle_9.Linear
  norm1 : __torch__.torch.nn.modules.normalization.LayerNorm
  ff : __torch__.torch.nn.modules.container.___torch_mangle_11.Sequential
  norm2 : __torch__.torch.nn.modules.normalization.LayerNorm
  def forward(self: __torch__.EncoderLayer,
    x: Tensor,
    bias: Tensor) -> Tensor:
    b, s, d, = torch.size(x)
    qkv = self.qkv
    _4 = (qkv).forward(x, )
    heads = self.heads
    head_dim = self.head_dim
    _5 = torch.reshape(_4, [b, s, 3, heads, head_dim])
    qkv0 = torch.permute(_5, [2, 0, 3, 1, 4])
    q = torch.select(qkv0, 0, 0)
    k = torch.select(qkv0, 0, 1)
    v = torch.select(qkv0, 0, 2)
    _6 = torch.matmul(q, torch.transpose(k, -2, -1))
    head_dim0 = self.head_dim
    _7 = torch.div(_6, torch.sqrt(head_dim0))
    scores = torch.add(_7, bias)
    attn = torch.softmax(scores, -1)
    _8 = torch.transpose(torch.matmul(attn, v), 1, 2)
    ctx = torch.reshape(_8, [b, s, d])
    norm1 = self.norm1
    proj = self.proj
    x1 = (norm1).forward(torch.add(x, (proj).forward(ctx, )), )
    norm2 = self.norm2
    ff = self.ff
    _9 = (norm2).forward(torch.add(x1, (ff).forward(x1, )), )
    return _9
