//+------------------------------------------------------------------+
//| Tradecast/Crypto.mqh                                              |
//| SHA-256 (CryptEncode), HMAC-SHA256 built on it, lowercase hex,   |
//| UTF-8 bytes without the trailing NUL, and the two EA-link        |
//| signatures of ea-link.md ("Authentication").                     |
//| Checked against ea-sdk/vectors/hmac.json and hmac-response.json  |
//| by TcSelfTest() at OnInit.                                        |
//+------------------------------------------------------------------+
#property strict
#ifndef TC_CRYPTO_MQH
#define TC_CRYPTO_MQH

#define TC_HMAC_BLOCK 64

//--- UTF-8 bytes of a string WITHOUT the trailing NUL.
//--- StringToCharArray always appends a 0 when given the whole string; a body ending in
//--- 0x00 is refused by the node with 400 trailing-nul, so the last byte is cut here.
int TcUtf8(const string s, uchar &out[])
  {
   ArrayResize(out, 0);
   if(StringLen(s) == 0)
      return 0;
   int n = StringToCharArray(s, out, 0, WHOLE_ARRAY, CP_UTF8);
   if(n > 0 && out[n - 1] == 0)
      n--;
   ArrayResize(out, n);
   return n;
  }

//--- A string from UTF-8 bytes (an answer body).
string TcFromUtf8(const uchar &bytes[])
  {
   if(ArraySize(bytes) == 0)
      return "";
   return CharArrayToString(bytes, 0, ArraySize(bytes), CP_UTF8);
  }

//--- Lowercase hex of bytes.
string TcHex(const uchar &bytes[])
  {
   string s = "";
   int n = ArraySize(bytes);
   for(int i = 0; i < n; i++)
      s += StringFormat("%02x", bytes[i]);
   return s;
  }

//--- SHA-256 of the empty input (FIPS 180-4): e3b0c442 98fc1c14 9afbf4c8 996fb924
//--- 27ae41e4 649b934c a495991b 7852b855.
const uchar TC_SHA256_EMPTY[32] = {0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8,
                                   0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c,
                                   0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

//--- SHA-256 of bytes (CryptEncode ignores the key for hashes; it must still be an array).
//--- An empty input (every empty body, and the self-test) gets the known constant: some builds'
//--- CryptEncode refuse zero-length data, which would fail OnInit in every terminal.
bool TcSha256(const uchar &data[], uchar &digest[])
  {
   if(ArraySize(data) == 0)
     {
      ArrayResize(digest, 32);
      ArrayCopy(digest, TC_SHA256_EMPTY);
      return true;
     }
   uchar nokey[];
   ArrayResize(nokey, 0);
   uchar copy[];
   ArrayCopy(copy, data);
   int n = CryptEncode(CRYPT_HASH_SHA256, copy, nokey, digest);
   return n == 32;
  }

string TcSha256Hex(const uchar &data[])
  {
   uchar d[];
   if(!TcSha256(data, d))
      return "";
   return TcHex(d);
  }

//--- HMAC-SHA256 (RFC 2104): keys longer than the 64-byte block are hashed first, shorter
//--- ones padded with zeros; inner = H((K ^ ipad) || msg), outer = H((K ^ opad) || inner).
bool TcHmacSha256(const uchar &key[], const uchar &msg[], uchar &mac[])
  {
   uchar k[];
   if(ArraySize(key) > TC_HMAC_BLOCK)
     {
      if(!TcSha256(key, k))
         return false;
     }
   else
      ArrayCopy(k, key);
   int klen = ArraySize(k);
   ArrayResize(k, TC_HMAC_BLOCK);
   for(int i = klen; i < TC_HMAC_BLOCK; i++)
      k[i] = 0;

   uchar inner[];
   int mlen = ArraySize(msg);
   ArrayResize(inner, TC_HMAC_BLOCK + mlen);
   for(int i = 0; i < TC_HMAC_BLOCK; i++)
      inner[i] = (uchar)(k[i] ^ 0x36);
   for(int i = 0; i < mlen; i++)
      inner[TC_HMAC_BLOCK + i] = msg[i];
   uchar innerHash[];
   if(!TcSha256(inner, innerHash))
      return false;

   uchar outer[];
   ArrayResize(outer, TC_HMAC_BLOCK + 32);
   for(int i = 0; i < TC_HMAC_BLOCK; i++)
      outer[i] = (uchar)(k[i] ^ 0x5c);
   for(int i = 0; i < 32; i++)
      outer[TC_HMAC_BLOCK + i] = innerHash[i];
   return TcSha256(outer, mac);
  }

//--- The HMAC key: the ASCII bytes of the secret exactly as displayed (no NUL).
void TcSecretBytes(const string secret, uchar &key[])
  {
   TcUtf8(secret, key);
  }

//--- Request signature: hex(HMAC(secret, METHOD\npath\ntimestamp\nnonce\nhex(sha256(body)))).
string TcSignRequest(const string secret, const string method, const string path,
                     const string timestamp, const string nonce, const uchar &body[])
  {
   string toSign = method + "\n" + path + "\n" + timestamp + "\n" + nonce + "\n" + TcSha256Hex(body);
   uchar key[], msg[], mac[];
   TcSecretBytes(secret, key);
   TcUtf8(toSign, msg);
   if(!TcHmacSha256(key, msg, mac))
      return "";
   return TcHex(mac);
  }

//--- Answer signature: hex(HMAC(secret, status\nrequest nonce\nhex(sha256(body)))).
string TcSignResponse(const string secret, const int status, const string nonce, const uchar &body[])
  {
   string toSign = IntegerToString(status) + "\n" + nonce + "\n" + TcSha256Hex(body);
   uchar key[], msg[], mac[];
   TcSecretBytes(secret, key);
   TcUtf8(toSign, msg);
   if(!TcHmacSha256(key, msg, mac))
      return "";
   return TcHex(mac);
  }

//--- Constant-time comparison of two signatures (no early exit on the first difference).
bool TcConstantTimeEquals(const string a, const string b)
  {
   int la = StringLen(a), lb = StringLen(b);
   int diff = la ^ lb;
   int n = (la > lb) ? la : lb;
   for(int i = 0; i < n; i++)
     {
      int ca = (i < la) ? StringGetCharacter(a, i) : 0;
      int cb = (i < lb) ? StringGetCharacter(b, i) : 0;
      diff |= (ca ^ cb);
     }
   return diff == 0 && la == 64;
  }

//--- Self-test at start: two of the shared vectors (ea-sdk/vectors/hmac*.json). A terminal whose
//--- CryptEncode or string handling differs refuses to run rather than sign wrongly.
bool TcSelfTest()
  {
   uchar body[];
   TcUtf8("{\"login\":5012345,\"server\":\"Demo-Server\"}", body);
   string s1 = TcSignRequest("tcs_9f8e7d6c5b4a3921", "POST", "/ea/v1/hello", "1700000000000",
                             "abcdefghijklmnop", body);
   uchar empty[];
   ArrayResize(empty, 0);
   string s2 = TcSignRequest("tcs_9f8e7d6c5b4a3921", "POST", "/ea/v1/poll", "1700000000500",
                             "Nonce_0123456789-xyz", empty);
   uchar ok[];
   TcUtf8("{\"ok\":true}", ok);
   string s3 = TcSignResponse("tcs_9f8e7d6c5b4a3921", 200, "abcdefghijklmnop", ok);
   //--- A key longer than the 64-byte block (79 characters): HMAC hashes it first.
   string s4 = TcSignRequest("A-very-long-secret-with-symbols!#$%&()*+,./:;<=>?@[]^{|}~ and spaces 0123456789",
                             "POST", "/ea/v1/state", "1731000000456", "long_key_self_test_0123456789", ok);
   bool good = s1 == "0d150b1eab8eeb4bc9e9a40b4a28a8a9a9fcf9c117718e743a28a33bea4861d6"
               && s2 == "2fefcc366a21fd14084f1ba8962cb7517e6e4caa765885489c31810640a06ba3"
               && s3 == "f22924b76faa8f620ce6dd4950dacbbb8878730b5bd9675b812f2beef938ace0"
               && s4 == "4ace7b17fecba07eac00373c1763bf9a60a15fcd5156802bc88c85ed8fe80b14";
   if(!good)
      PrintFormat("Tradecast: HMAC self-test FAILED (%s / %s / %s / %s)", s1, s2, s3, s4);
   return good;
  }
//+------------------------------------------------------------------+
#endif // TC_CRYPTO_MQH
