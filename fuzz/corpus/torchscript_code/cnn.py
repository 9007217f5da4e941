SmallCNN
class SmallCNN(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  body : __torch__.torch.nn.modules.container.___torch_mangle_5.Sequential
  head : __torch__.torch.nn.modules.linear.___torch_mangle_6.Linear
  def forward(self: __torch__.SmallCNN,
    image: Tensor) -> Tensor:
    body = self.body
    x = (body).forward(image, )
    x0 = torch.mean(x, [2, 3])
    head = self.head
    return (head).forward(x0, )
