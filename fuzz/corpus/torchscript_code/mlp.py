TabularMLP
class TabularMLP(Module):
  __parameters__ = []
  __buffers__ = []
  training : bool
  _is_full_backward_hook : Optional[bool]
  net : __torch__.torch.nn.modules.container.Sequential
  def forward(self: __torch__.TabularMLP,
    features: Tensor) -> Tensor:
    net = self.net
    return (net).forward(features, )
