"""The contracts the layers share, in pure Python (no Amaranth, no host runtime):
the wire protocol (:mod:`.protocol`: commands and error codes, :mod:`.framing`,
:mod:`.payloads`), what a device says about itself
(:mod:`.info`), the core's generics and register map (:mod:`.config`), its
timing profiles (:mod:`.timing`), the network compiler (:mod:`.compiler`) and
the decoding of the core's records and state with the golden model's
expectations of them (:mod:`.harness`).  The gateware, the simulators, the
host runtime and the board builds all import these; none of them imports the
others' code to learn a constant."""
