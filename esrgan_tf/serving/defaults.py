"""esrgan-serve's default limits and bind address (plain constants: no gRPC, no TensorFlow).

Sized for a 2-core box with a few GB of RAM (esrgan-serve is a development / small-deployment
server; `tensorflow_model_server` is the production one):
  * 64 MB messages: a ×4 float32 answer for a 512² input is 512²·16·3·4 B = 50 MB (gRPC); REST
    JSON text of the same answer would be ~315 MB and is refused (ask for uint8 or bytes).
  * 512² input pixels per request: RRDBNet (nf=64) keeps ~20 feature maps of H·W·64 float32
    alive, ~1.3 GB at 512²; clients tile larger images (esrgan_tf.inference.tiling does).
  * 2 requests in flight, one per core: more only queue inside TF while each holds its memory.
  * 64 REST connections: threads reading requests (cheap while waiting); compute stays at 2.
"""

SERVER_MAX_MESSAGE_MB = 64
SERVER_MAX_PIXELS = 512 * 512
SERVER_MAX_INFLIGHT = 2
SERVER_MAX_CONNECTIONS = 64
# Loopback only unless asked: esrgan-serve has no authentication (as tensorflow_model_server).
DEFAULT_HOST = "127.0.0.1"
