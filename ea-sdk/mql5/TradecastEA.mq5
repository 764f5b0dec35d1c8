//+------------------------------------------------------------------+
//| TradecastEA.mq5                                                   |
//| The reference Expert Advisor of the Tradecast EA link            |
//| (ea-sdk/README.md; spec: shared/design/ea-link.md).               |
//|                                                                  |
//| It keeps no logic of its own beyond the link's safety rules:     |
//| every decision lives in the node. It introduces the account      |
//| (hello), long-polls the node from its timer, executes orders and |
//| commands with magic = (InpMagic << 32) | order_no and comment     |
//| "tc:<order id>", looks each one up by magic before sending and   |
//| after any unknown outcome, pushes state, deals and closed bars   |
//| with times in UTC, and enforces the node's equity floor on its   |
//| own when the node is silent.                                      |
//+------------------------------------------------------------------+
#property copyright "Tradecast"
#property version   "1.20"
#property strict
#property description "Tradecast EA link: executes what the Tradecast node decides."

#include "Tradecast/Crypto.mqh"
#include "Tradecast/Json.mqh"
#include "Tradecast/Link.mqh"
#include "Tradecast/Trade.mqh"

#define TC_EA_VERSION    "1.2.0"
#define TC_TIMER_MS      100
#define TC_MAX_BARS      1000
#define TC_MAX_DEALS     500
#define TC_MAX_REMEMBERED_DEALS 5000
//--- After a failed hello the next waits 1 s, doubling to 30 s, jittered (TcBackoffMs).
#define TC_RETRY_FIRST_MS 1000
#define TC_RETRY_MAX_MS   30000
//--- A hello nothing answered (the node not running or being restarted) is tried again at the
//--- next tick: it costs the node nothing and TcJournal says it once a minute. Error 4014 (the
//--- URL not allowed) is no answer too, but will not change by itself: it backs off.
//--- After equity-floor closes that failed (10018 all weekend, ...): 5 s doubling to 5 min.
#define TC_FLOOR_RETRY_FIRST_MS 5000
#define TC_FLOOR_RETRY_MAX_MS   300000
//--- Characters of symbol specs in a hello, and in one state push: a spec is written while the
//--- specs so far are under the budget; the other symbols' specs follow in the next state
//--- pushes, so hundreds of Market Watch symbols never make a body over the node's 256 KiB.
#define TC_HELLO_SPEC_BYTES (160 * 1024)
#define TC_STATE_SPEC_BYTES (128 * 1024)
//--- A state is pushed at once when equity moved by this share of the equity last pushed (the
//--- node's equity points sample the same 0.1 %); a smaller move (live profit) waits for
//--- InpStateEverySec on the trade server's clock, so prices alone do not push every cycle.
#define TC_STATE_EQUITY_MOVE 0.001

//--- Inputs: the node's address and this install's key, the magic, and the allow-list.
input string InpNodeUrl           = "http://127.0.0.1:7341"; // Node URL (EA link, 127.0.0.1 only)
input string InpKeyId             = "";                      // Key id (shown by the node)
input string InpSecret            = "";                      // Secret (shown once by the node)
input uint   InpMagic             = 20260101;                // Magic (high 32 bits of every Tradecast order)
input uint   InpMaxSlippagePoints = 10;                      // Max slippage, points (when the node does not say)
input int    InpPollWaitMs        = 500;                     // Poll wait, ms (until the node sets it at hello)
input string InpSymbols           = "";                      // Symbol allow-list, comma-separated (empty: Market Watch)
input int    InpFloorSilenceSec   = 30;                      // Node silent this long: the EA enforces the equity floor itself
input int    InpStateEverySec     = 5;                       // State push period, seconds (also after every trade)

//--- The EA's memory (lost on restart: the node's cursors and the look-up make that harmless).
CTcLink  g_link;
string   g_session = "";
int      g_pollWait = 500;
bool     g_hasFloor = false;
double   g_floor = 0;
long     g_dealsFrom = 0;
string   g_subSym[];
string   g_subTf[];
long     g_barsFrom[];
long     g_barsPushed[];
string   g_specReq[];      // specs for the next state pushes: asked for, or past the hello's budget
int      g_specWritten = 0; // how many of them the last state body carried
string   g_bfSym[];
string   g_bfTf[];
long     g_bfFrom[];
long     g_bfTo[];
ulong    g_dealsPushed[];
string   g_lastState = "";    // the last state pushed, without what moves with prices
long     g_lastStateTime = 0; // TimeTradeServer() of the last push
double   g_lastStateEquity = 0;
long     g_lastStateDay = -1;  // its server day
string   g_instance = "";      // this EA: hash of the terminal's data path and the chart id (TcInstance)
bool     g_busy = false;
//--- A floor breach handled alone, reported at the next hello.
bool     g_breach = false;
long     g_breachTime = 0;
double   g_breachEquity = 0;
double   g_breachFloor = 0;
int      g_breachClosed = 0;
int      g_breachFailed = 0;
//--- Backoff: failed hellos and failed floor attempts in a row, and when the next may go.
int      g_helloFailures = 0;
bool     g_lastCallNoAnswer = false;   // the last call got no answer at all (node down)
ulong    g_helloNextTick = 0;
int      g_floorFailures = 0;
ulong    g_floorNextTick = 0;

//+------------------------------------------------------------------+
//| Small helpers                                                     |
//+------------------------------------------------------------------+
int TcAccountDigits() { return (int)AccountInfoInteger(ACCOUNT_CURRENCY_DIGITS); }
long TcNowUtcMs() { return TcUtcMs(TimeTradeServer()); }
int TcTimeoutMs() { return g_pollWait + 2000; }

//--- `first` doubled per earlier failure, at most `max`, jittered to between half and all of it
//--- so that terminals restarted together do not retry in step.
ulong TcBackoffMs(const int failures, const ulong first, const ulong max)
  {
   ulong full = first;
   for(int i = 1; i < failures && full < max; i++)
      full *= 2;
   if(full > max)
      full = max;
   ulong half = full / 2;
   return half + (ulong)MathRand() % (half + 1);
  }

//--- Whether a symbol is in the inputs' allow-list (empty list: every Market Watch symbol).
bool TcAllowed(const string symbol)
  {
   if(StringLen(InpSymbols) == 0)
      return true;
   string parts[];
   int n = StringSplit(InpSymbols, ',', parts);
   for(int i = 0; i < n; i++)
     {
      string p = parts[i];
      StringTrimLeft(p);
      StringTrimRight(p);
      if(p == symbol)
         return true;
     }
   return false;
  }

ENUM_TIMEFRAMES TcTf(const string name)
  {
   if(name == "M1")  return PERIOD_M1;
   if(name == "M5")  return PERIOD_M5;
   if(name == "M15") return PERIOD_M15;
   if(name == "M30") return PERIOD_M30;
   if(name == "H1")  return PERIOD_H1;
   if(name == "H4")  return PERIOD_H4;
   if(name == "D1")  return PERIOD_D1;
   if(name == "W1")  return PERIOD_W1;
   if(name == "MN1") return PERIOD_MN1;
   return PERIOD_CURRENT;
  }

string TcTradeMode(const string symbol)
  {
   switch((ENUM_SYMBOL_TRADE_MODE)SymbolInfoInteger(symbol, SYMBOL_TRADE_MODE))
     {
      case SYMBOL_TRADE_MODE_DISABLED:  return "disabled";
      case SYMBOL_TRADE_MODE_LONGONLY:  return "long_only";
      case SYMBOL_TRADE_MODE_SHORTONLY: return "short_only";
      case SYMBOL_TRADE_MODE_CLOSEONLY: return "close_only";
      default:                          return "full";
     }
  }

string TcOrderKind(const ENUM_ORDER_TYPE t)
  {
   switch(t)
     {
      case ORDER_TYPE_BUY:        return "buy";
      case ORDER_TYPE_SELL:       return "sell";
      case ORDER_TYPE_BUY_LIMIT:  return "buy_limit";
      case ORDER_TYPE_SELL_LIMIT: return "sell_limit";
      case ORDER_TYPE_BUY_STOP:   return "buy_stop";
      case ORDER_TYPE_SELL_STOP:  return "sell_stop";
      default:                    return "";
     }
  }

string TcDealKind(const ENUM_DEAL_TYPE t)
  {
   switch(t)
     {
      case DEAL_TYPE_BUY:        return "buy";
      case DEAL_TYPE_SELL:       return "sell";
      case DEAL_TYPE_BALANCE:    return "balance";
      case DEAL_TYPE_CREDIT:     return "credit";
      case DEAL_TYPE_CHARGE:     return "charge";
      case DEAL_TYPE_CORRECTION: return "correction";
      case DEAL_TYPE_BONUS:      return "bonus";
      case DEAL_TYPE_COMMISSION: return "commission";
      default:                   return "other";
     }
  }

string TcDealEntry(const ENUM_DEAL_ENTRY e)
  {
   switch(e)
     {
      case DEAL_ENTRY_IN:    return "in";
      case DEAL_ENTRY_OUT:   return "out";
      case DEAL_ENTRY_INOUT: return "inout";
      case DEAL_ENTRY_OUT_BY: return "out_by";
      default:               return "none";
     }
  }

string TcDealReason(const ENUM_DEAL_REASON r)
  {
   switch(r)
     {
      case DEAL_REASON_CLIENT:   return "client";
      case DEAL_REASON_MOBILE:   return "mobile";
      case DEAL_REASON_WEB:      return "web";
      case DEAL_REASON_EXPERT:   return "expert";
      case DEAL_REASON_SL:       return "sl";
      case DEAL_REASON_TP:       return "tp";
      case DEAL_REASON_SO:       return "stop_out";
      case DEAL_REASON_ROLLOVER: return "rollover";
      case DEAL_REASON_VMARGIN:  return "vmargin";
      case DEAL_REASON_SPLIT:    return "split";
      default:                   return "other";
     }
  }

void TcPushString(string &arr[], const string v)
  {
   int n = ArraySize(arr);
   ArrayResize(arr, n + 1);
   arr[n] = v;
  }

//+------------------------------------------------------------------+
//| Calls                                                             |
//+------------------------------------------------------------------+
//--- One signed call. A 409 hello-required drops the session (the next cycle says hello).
//--- Returns true only for a signed 200; `answer` is then the parsed body (caller deletes).
bool TcCall(const string path, const string body, CTcJson *&answer)
  {
   answer = NULL;
   int status = 0;
   string text = "";
   int link = g_link.Post(path, body, TcTimeoutMs(), status, text);
   g_lastCallNoAnswer = (link == TC_LINK_NO_ANSWER && g_link.LastError() != 4014);
   if(link != TC_LINK_OK)
      return false;
   if(status != 200)
     {
      CTcJson *p = TcJsonParse(text);
      string code = (p != NULL) ? p.Str("code") : "";
      string field = (p != NULL) ? p.Str("field") : "";
      if(p != NULL)
         delete p;
      if(status == 409 && code == "hello-required")
        {
         Print("Tradecast: hello required: introducing the account again");
         g_session = "";
        }
      else if(status == 409 && code == "another-ea")
         TcJournal("another-ea", "another Tradecast EA (another chart, or another terminal logged in to this account) is connected to the node: this one waits and says hello again once the other stops. Two EAs on one account would both execute every order: remove one");
      else if(status == 401)
         TcJournal("refused-401", StringFormat("the node refused %s: 401 %s. Check the key id and secret, and that this PC's clock is right (within 30 s).", path, code));
      else
         TcJournal(StringFormat("refused-%d", status), StringFormat("the node refused %s: %d %s %s", path, status, code, field));
      return false;
     }
   answer = TcJsonParse(text);
   if(answer == NULL)
     {
      PrintFormat("Tradecast: unreadable answer from %s", path);
      return false;
     }
   g_link.MarkContact();   // only a signed, readable 200 shows the node alive
   return true;
  }

//--- A symbol's spec (hello and requested specs).
void TcWriteSpec(CTcJsonWriter &w, const string symbol)
  {
   int digits = TcDigits(symbol);
   int vd = TcVolumeDigits(symbol);
   w.BeginObject();
   w.KStr("symbol", symbol);
   w.KInt("digits", digits);
   w.KDec("point", SymbolInfoDouble(symbol, SYMBOL_POINT), digits);
   w.KDec("tick_size", SymbolInfoDouble(symbol, SYMBOL_TRADE_TICK_SIZE), digits);
   w.KDec("tick_value_profit", SymbolInfoDouble(symbol, SYMBOL_TRADE_TICK_VALUE_PROFIT), 8);
   w.KDec("tick_value_loss", SymbolInfoDouble(symbol, SYMBOL_TRADE_TICK_VALUE_LOSS), 8);
   w.KDec("contract_size", SymbolInfoDouble(symbol, SYMBOL_TRADE_CONTRACT_SIZE), 2);
   w.KDec("volume_min", SymbolInfoDouble(symbol, SYMBOL_VOLUME_MIN), vd);
   w.KDec("volume_max", SymbolInfoDouble(symbol, SYMBOL_VOLUME_MAX), vd);
   w.KDec("volume_step", SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP), vd);
   w.KInt("stops_level", SymbolInfoInteger(symbol, SYMBOL_TRADE_STOPS_LEVEL));
   w.KInt("freeze_level", SymbolInfoInteger(symbol, SYMBOL_TRADE_FREEZE_LEVEL));
   w.KStr("trade_mode", TcTradeMode(symbol));
   w.KStr("currency_base", SymbolInfoString(symbol, SYMBOL_CURRENCY_BASE));
   w.KStr("currency_profit", SymbolInfoString(symbol, SYMBOL_CURRENCY_PROFIT));
   w.KStr("currency_margin", SymbolInfoString(symbol, SYMBOL_CURRENCY_MARGIN));
   //--- Sessions: server-time windows per weekday, moved to the UTC week and split at Sunday 00:00.
   w.Key("sessions");
   w.BeginArray();
   const long WEEK = 7 * 86400;
   for(int day = 0; day < 7; day++)
     {
      datetime from, to;
      for(uint idx = 0; SymbolInfoSessionTrade(symbol, (ENUM_DAY_OF_WEEK)day, idx, from, to); idx++)
        {
         long f = day * 86400 + (long)from - g_tcOffset;
         long t = day * 86400 + (long)to - g_tcOffset;
         if(t <= f)
            continue;
         while(f < 0)
           { f += WEEK; t += WEEK; }
         while(f >= WEEK)
           { f -= WEEK; t -= WEEK; }
         if(t <= WEEK)
           {
            w.BeginObject(); w.KInt("from_week_s", f); w.KInt("to_week_s", t); w.EndObject();
           }
         else
           {
            w.BeginObject(); w.KInt("from_week_s", f); w.KInt("to_week_s", WEEK); w.EndObject();
            w.BeginObject(); w.KInt("from_week_s", 0); w.KInt("to_week_s", t - WEEK); w.EndObject();
           }
        }
     }
   w.EndArray();
   w.EndObject();
  }

//--- Whether a symbol has a position or a pending order on the account (its spec goes first).
bool TcHeld(const string symbol)
  {
   for(int i = PositionsTotal() - 1; i >= 0; i--)
      if(PositionGetTicket(i) != 0 && PositionGetString(POSITION_SYMBOL) == symbol)
         return true;
   for(int i = OrdersTotal() - 1; i >= 0; i--)
      if(OrderGetTicket(i) != 0 && OrderGetString(ORDER_SYMBOL) == symbol)
         return true;
   return false;
  }

//--- Queues a symbol for the specs of the next state pushes (once).
void TcQueueSpec(const string symbol)
  {
   for(int i = 0; i < ArraySize(g_specReq); i++)
      if(g_specReq[i] == symbol)
         return;
   TcPushString(g_specReq, symbol);
  }

//--- hello: account, margin mode, offset, Market Watch symbols (allow-list) with specs: the
//--- symbols with positions or pending orders first, then Market Watch order, within
//--- TC_HELLO_SPEC_BYTES; the rest are queued for the state pushes (TcStateBody).
bool TcHello()
  {
   TcNoteOffset();
   CTcJsonWriter w;
   int ad = TcAccountDigits();
   w.BeginObject();
   w.KInt("login", AccountInfoInteger(ACCOUNT_LOGIN));
   w.KStr("server", AccountInfoString(ACCOUNT_SERVER));
   w.KStr("company", AccountInfoString(ACCOUNT_COMPANY));
   w.KStr("currency", AccountInfoString(ACCOUNT_CURRENCY));
   w.KInt("leverage", AccountInfoInteger(ACCOUNT_LEVERAGE));
   w.KStr("margin_mode", TcIsNetting() ? "netting" : "hedging");
   w.KInt("terminal_build", TerminalInfoInteger(TERMINAL_BUILD));
   w.KStr("ea_version", TC_EA_VERSION);
   w.KStr("instance", g_instance);
   w.KInt("server_utc_offset_s", g_tcOffset);
   w.KInt("terminal_time_ms", TcNowUtcMs());
   w.Key("symbols");
   w.BeginArray();
   string rest[];
   int specStart = w.Length();
   for(int pass = 0; pass < 2; pass++)
      for(int i = 0; i < SymbolsTotal(true); i++)
        {
         string s = SymbolName(i, true);
         if(!TcAllowed(s) || TcHeld(s) != (pass == 0))
            continue;
         if(w.Length() - specStart < TC_HELLO_SPEC_BYTES)
            TcWriteSpec(w, s);
         else
            TcPushString(rest, s);
        }
   w.EndArray();
   if(g_breach)
     {
      w.Key("floor_breach");
      w.BeginObject();
      w.KInt("time_ms", g_breachTime);
      w.KDec("equity", g_breachEquity, ad);
      w.KDec("floor", g_breachFloor, ad);
      w.KInt("n_closed", g_breachClosed);
      w.KInt("n_failed", g_breachFailed);
      w.EndObject();
     }
   w.EndObject();
   CTcJson *a;
   if(!TcCall("/ea/v1/hello", w.Text(), a))
      return false;
   g_breach = false;
   for(int i = 0; i < ArraySize(rest); i++)
      TcQueueSpec(rest[i]);
   g_session = a.Str("session_id");
   g_pollWait = (int)a.Long("poll_wait_ms", InpPollWaitMs);
   g_hasFloor = !a.IsNull("equity_floor");
   g_floor = a.Dec("equity_floor");
   g_dealsFrom = a.Long("deals_from_ms");
   ArrayResize(g_dealsPushed, 0);
   ArrayResize(g_subSym, 0);
   ArrayResize(g_subTf, 0);
   ArrayResize(g_barsFrom, 0);
   ArrayResize(g_barsPushed, 0);
   CTcJson *subs = a.Get("subscriptions");
   for(int i = 0; subs != NULL && i < subs.Size(); i++)
     {
      CTcJson *s = subs.At(i);
      string sym = s.Str("symbol");
      string tf = s.Str("timeframe");
      if(TcTf(tf) == PERIOD_CURRENT || !TcAllowed(sym))
        {
         PrintFormat("Tradecast: subscription %s %s ignored (unknown timeframe or symbol not allowed)", sym, tf);
         continue;
        }
      int n = ArraySize(g_subSym);
      ArrayResize(g_subSym, n + 1);
      ArrayResize(g_subTf, n + 1);
      ArrayResize(g_barsFrom, n + 1);
      ArrayResize(g_barsPushed, n + 1);
      g_subSym[n] = sym;
      g_subTf[n] = tf;
      g_barsFrom[n] = 0;
      g_barsPushed[n] = -1;
      SymbolSelect(sym, true);
     }
   CTcJson *cursors = a.Get("bars_from");
   for(int i = 0; cursors != NULL && i < cursors.Size(); i++)
     {
      CTcJson *c = cursors.At(i);
      for(int j = 0; j < ArraySize(g_subSym); j++)
         if(g_subSym[j] == c.Str("symbol") && g_subTf[j] == c.Str("timeframe"))
            g_barsFrom[j] = c.Long("from_ms");
     }
   delete a;
   g_lastState = "";
   PrintFormat("Tradecast: connected to the node, session %s, %d bar subscriptions, poll wait %d ms",
               g_session, ArraySize(g_subSym), g_pollWait);
   return true;
  }

//--- ack: outcome, MT5's own retcode, tickets, fill.
void TcAck(const string order_id, const int outcome, const uint retcode, const string message,
           const bool found, const ulong order_ticket, const ulong deal_ticket, const ulong position_id,
           const double price, const double volume, const long time_ms, const string symbol)
  {
   int digits = (symbol != "") ? TcDigits(symbol) : 5;
   int vd = (symbol != "") ? TcVolumeDigits(symbol) : 2;
   CTcJsonWriter w;
   w.BeginObject();
   w.KStr("session_id", g_session);
   w.KStr("order_id", order_id);
   w.KStr("outcome", outcome == TC_OUTCOME_DONE ? "done" : outcome == TC_OUTCOME_REJECTED ? "rejected" : "unknown");
   w.KUInt("retcode", retcode);
   w.KStr("message", message);
   w.KBool("found_by_lookup", found);
   w.Key("order_ticket");  if(order_ticket > 0) w.UInt(order_ticket); else w.Null();
   w.Key("deal_ticket");   if(deal_ticket > 0) w.UInt(deal_ticket); else w.Null();
   w.Key("position_id");   if(position_id > 0) w.UInt(position_id); else w.Null();
   w.KDecOpt("price", price, digits);
   w.KDecOpt("volume", volume, vd);
   w.Key("time_ms");       if(time_ms > 0) w.Int(time_ms); else w.Null();
   w.EndObject();
   CTcJson *a;
   if(TcCall("/ea/v1/ack", w.Text(), a))
      delete a;
   // A lost ack is harmless: the node offers the order again and the look-up finds it.
   PrintFormat("Tradecast: %s %s (retcode %u%s)", order_id,
               outcome == TC_OUTCOME_DONE ? "done" : outcome == TC_OUTCOME_REJECTED ? "rejected" : "UNKNOWN",
               retcode, found ? ", found by magic look-up" : "");
  }

void TcAckFound(const string order_id, TcFound &f)
  {
   TcAck(order_id, TC_OUTCOME_DONE, TRADE_RETCODE_DONE, "found by magic look-up", true,
         f.order_ticket, f.deal_ticket, f.position_id, f.price, f.volume, f.time_ms, f.symbol);
  }

//--- From a send's result to an ack: done, rejected, or (10012, 10031, no result) look up
//--- again and ack what is found, or unknown.
void TcSettle(const string order_id, const ulong magic, MqlTradeResult &res, const string symbol)
  {
   int oc = TcClassify(res.retcode);
   if(oc == TC_OUTCOME_DONE)
     {
      double price = res.price;
      long time_ms = TcNowUtcMs();
      if(res.deal > 0 && HistoryDealSelect(res.deal))
        {
         if(price == 0)
            price = HistoryDealGetDouble(res.deal, DEAL_PRICE);
         time_ms = TcUtcMsFromMsc(HistoryDealGetInteger(res.deal, DEAL_TIME_MSC));
        }
      TcAck(order_id, TC_OUTCOME_DONE, res.retcode, res.comment, false, res.order, res.deal,
            TcDealPosition(res.deal), price, res.volume, time_ms, symbol);
      return;
     }
   if(oc == TC_OUTCOME_REJECTED)
     {
      TcAck(order_id, TC_OUTCOME_REJECTED, res.retcode, res.comment, false, 0, 0, 0, 0, 0, 0, symbol);
      return;
     }
   TcFound f;
   if(TcLookup(magic, f))
      TcAckFound(order_id, f);
   else
      TcAck(order_id, TC_OUTCOME_UNKNOWN, res.retcode, res.comment, false, 0, 0, 0, 0, 0, 0, symbol);
  }

//--- Pending orders placed with a longer lifetime than the node asked for (the symbol has no
//--- SPECIFIED expiration): their ticket and the node's expiry (UTC ms). Lost on a restart: the
//--- broker's DAY or SPECIFIED_DAY lifetime still ends them that day.
ulong    g_expTicket[];
long     g_expAt[];

void TcRememberExpiry(const ulong ticket, const long utc_ms)
  {
   int n = ArraySize(g_expTicket);
   ArrayResize(g_expTicket, n + 1);
   ArrayResize(g_expAt, n + 1);
   g_expTicket[n] = ticket;
   g_expAt[n] = utc_ms;
  }

//--- Every cycle: removes those orders once the node's expiry has passed. One gone already
//--- (filled, expired, deleted by hand) is forgotten; a refused removal (market closed) is tried
//--- again TC_EXPIRE_RETRY_MS later, not every cycle.
#define TC_EXPIRE_RETRY_MS 60000
void TcExpireOwn()
  {
   long now = TcNowUtcMs();
   for(int i = ArraySize(g_expTicket) - 1; i >= 0; i--)
     {
      bool gone = !OrderSelect(g_expTicket[i]);
      if(!gone && now < g_expAt[i])
         continue;
      if(!gone)
        {
         MqlTradeRequest req;
         MqlTradeResult res;
         ZeroMemory(req);
         req.action = TRADE_ACTION_REMOVE;
         req.order = g_expTicket[i];
         TcOrderSend(req, res);
         gone = TcClassify(res.retcode) == TC_OUTCOME_DONE || res.retcode == TRADE_RETCODE_INVALID_ORDER;
         if(!gone)
           {
            g_expAt[i] = now + TC_EXPIRE_RETRY_MS;
            continue;
           }
        }
      ArrayRemove(g_expTicket, i, 1);
      ArrayRemove(g_expAt, i, 1);
     }
  }

//--- An order from the poll: look up, then send.
void TcExecuteOrder(CTcJson *o)
  {
   string id = o.Str("order_id");
   uint no = (uint)o.Long("order_no");
   string symbol = o.Str("symbol");
   string kind = o.Str("kind");
   ulong magic = TcMagic(InpMagic, no);
   TcFound f;
   if(TcLookup(magic, f))
     {
      TcAckFound(id, f);
      return;
     }
   if(!TcAllowed(symbol) || !SymbolSelect(symbol, true))
     {
      TcAck(id, TC_OUTCOME_REJECTED, TRADE_RETCODE_INVALID, "symbol not in the EA's allow-list", false, 0, 0, 0, 0, 0, 0, "");
      return;
     }
   int digits = TcDigits(symbol);
   MqlTradeRequest req;
   MqlTradeResult res;
   bool outlives = false;
   ZeroMemory(req);
   req.symbol = symbol;
   req.volume = o.Dec("volume");
   req.sl = NormalizeDouble(o.Dec("sl"), digits);
   req.tp = NormalizeDouble(o.Dec("tp"), digits);
   req.magic = magic;
   req.comment = TcComment(id);
   req.deviation = o.IsNull("max_slippage_points") ? InpMaxSlippagePoints : (uint)o.Long("max_slippage_points");
   if(kind == "buy" || kind == "sell")
     {
      req.action = TRADE_ACTION_DEAL;
      req.type = (kind == "buy") ? ORDER_TYPE_BUY : ORDER_TYPE_SELL;
      req.price = (kind == "buy") ? SymbolInfoDouble(symbol, SYMBOL_ASK) : SymbolInfoDouble(symbol, SYMBOL_BID);
     }
   else
     {
      req.action = TRADE_ACTION_PENDING;
      if(kind == "buy_limit")       req.type = ORDER_TYPE_BUY_LIMIT;
      else if(kind == "sell_limit") req.type = ORDER_TYPE_SELL_LIMIT;
      else if(kind == "buy_stop")   req.type = ORDER_TYPE_BUY_STOP;
      else if(kind == "sell_stop")  req.type = ORDER_TYPE_SELL_STOP;
      else
        {
         TcAck(id, TC_OUTCOME_REJECTED, TRADE_RETCODE_INVALID, "unknown order kind " + kind, false, 0, 0, 0, 0, 0, 0, symbol);
         return;
        }
      req.price = NormalizeDouble(o.Dec("price"), digits);
      datetime expiry = o.IsNull("expiration_ms") ? 0 : TcServerTime(o.Long("expiration_ms"));
      req.type_time = TcTypeTime(symbol, expiry, outlives);
      if(req.type_time == ORDER_TIME_SPECIFIED || req.type_time == ORDER_TIME_SPECIFIED_DAY)
         req.expiration = expiry;
     }
   req.type_filling = TcFilling(symbol, req.type);
   TcOrderSend(req, res);
   if(outlives && res.retcode == TRADE_RETCODE_PLACED)
      TcRememberExpiry(res.order, o.Long("expiration_ms"));
   TcSettle(id, magic, res, symbol);
  }

//--- Whether a position's (or pending order's) SL/TP are already the wanted ones.
bool TcLevelsAre(const ulong position_id, const ulong order_ticket, const double sl, const double tp, const int digits)
  {
   double eps = MathPow(10, -digits) / 2;
   if(position_id > 0 && TcSelectPosition(position_id) != 0)
      return MathAbs(PositionGetDouble(POSITION_SL) - sl) < eps && MathAbs(PositionGetDouble(POSITION_TP) - tp) < eps;
   if(order_ticket > 0 && OrderSelect(order_ticket))
      return MathAbs(OrderGetDouble(ORDER_SL) - sl) < eps && MathAbs(OrderGetDouble(ORDER_TP) - tp) < eps;
   return false;
  }

//--- A command from the poll.
void TcExecuteCommand(CTcJson *c)
  {
   string type = c.Str("type");
   if(type == "close")
     {
      string id = c.Str("order_id");
      ulong magic = TcMagic(InpMagic, (uint)c.Long("order_no"));
      TcFound f;
      if(TcLookup(magic, f))
        {
         TcAckFound(id, f);
         return;
        }
      MqlTradeResult res;
      ulong position = c.ULong("position_id");
      string symbol = c.Str("symbol");
      TcClosePosition(position, c.Dec("volume"), magic, TcComment(id), InpMaxSlippagePoints, res);
      // 10018 (market closed) is acked as rejected; the node keeps the close due and sends it again.
      TcSettle(id, magic, res, symbol);
      return;
     }
   if(type == "modify")
     {
      string id = c.Str("order_id");
      ulong position = c.IsNull("position_id") ? 0 : c.ULong("position_id");
      ulong ticket = c.IsNull("order_ticket") ? 0 : c.ULong("order_ticket");
      MqlTradeRequest req;
      MqlTradeResult res;
      ZeroMemory(req);
      ZeroMemory(res);
      string symbol = "";
      ulong positionTicket = TcSelectPosition(position);
      if(positionTicket != 0)
        {
         symbol = PositionGetString(POSITION_SYMBOL);
         req.action = TRADE_ACTION_SLTP;
         req.position = positionTicket;   // the ticket, not the identifier (TcSelectPosition)
        }
      else if(ticket > 0 && OrderSelect(ticket))
        {
         symbol = OrderGetString(ORDER_SYMBOL);
         req.action = TRADE_ACTION_MODIFY;
         req.order = ticket;
         req.price = OrderGetDouble(ORDER_PRICE_OPEN);
         req.type_time = (ENUM_ORDER_TYPE_TIME)OrderGetInteger(ORDER_TYPE_TIME);
         req.expiration = (datetime)OrderGetInteger(ORDER_TIME_EXPIRATION);
        }
      else
        {
         TcAck(id, TC_OUTCOME_REJECTED, position > 0 ? TRADE_RETCODE_POSITION_CLOSED : TRADE_RETCODE_INVALID_ORDER,
               "nothing to modify", false, 0, 0, 0, 0, 0, 0, "");
         return;
        }
      int digits = TcDigits(symbol);
      req.symbol = symbol;
      req.sl = NormalizeDouble(c.Dec("sl"), digits);
      req.tp = NormalizeDouble(c.Dec("tp"), digits);
      req.magic = TcMagic(InpMagic, (uint)c.Long("order_no"));
      TcOrderSend(req, res);
      uint code = res.retcode;
      int oc = TcClassify(code);
      if(code == TRADE_RETCODE_NO_CHANGES)
         oc = TC_OUTCOME_DONE;
      if(oc == TC_OUTCOME_UNKNOWN && TcLevelsAre(position, ticket, req.sl, req.tp, digits))
         oc = TC_OUTCOME_DONE;
      TcAck(id, oc, code, res.comment, false, ticket, 0, position, 0, 0, TcNowUtcMs(), symbol);
      return;
     }
   if(type == "close_all")
     {
      string id = c.Str("order_id");
      bool everything = c.Str("scope") == "everything";
      uint code = TcCloseAll(InpMagic, everything, TcComment(id), InpMaxSlippagePoints);
      TcAck(id, TcClassify(code), code, everything ? "close all (everything)" : "close all (Tradecast)",
            false, 0, 0, 0, 0, 0, TcNowUtcMs(), "");
      return;
     }
   if(type == "request_spec")
     {
      CTcJson *syms = c.Get("symbols");
      for(int i = 0; syms != NULL && i < syms.Size(); i++)
         if(TcAllowed(syms.At(i).str))
            TcQueueSpec(syms.At(i).str);
      return;
     }
   if(type == "backfill")
     {
      int n = ArraySize(g_bfSym);
      ArrayResize(g_bfSym, n + 1);
      ArrayResize(g_bfTf, n + 1);
      ArrayResize(g_bfFrom, n + 1);
      ArrayResize(g_bfTo, n + 1);
      g_bfSym[n] = c.Str("symbol");
      g_bfTf[n] = c.Str("timeframe");
      g_bfFrom[n] = c.Long("from_ms");
      g_bfTo[n] = c.Long("to_ms");
      return;
     }
   PrintFormat("Tradecast: command %s ignored (unknown to EA %s)", type, TC_EA_VERSION);
  }

//--- state: account figures, every position and pending order, tick values, requested specs.
//--- With full = false, the fingerprint TcPushState compares: without what moves with every price
//--- (time, equity, margin, free margin, current prices, profit, tick values).
string TcStateBody(const bool full)
  {
   int ad = TcAccountDigits();
   CTcJsonWriter w;
   w.BeginObject();
   w.KStr("session_id", g_session);
   w.KInt("terminal_time_ms", full ? TcNowUtcMs() : 0);
   w.KDec("balance", AccountInfoDouble(ACCOUNT_BALANCE), ad);
   w.KDec("equity", full ? AccountInfoDouble(ACCOUNT_EQUITY) : 0, ad);
   w.KDec("margin", full ? AccountInfoDouble(ACCOUNT_MARGIN) : 0, ad);
   w.KDec("free_margin", full ? AccountInfoDouble(ACCOUNT_MARGIN_FREE) : 0, ad);
   w.KDec("credit", AccountInfoDouble(ACCOUNT_CREDIT), ad);
   string traded[];
   w.Key("positions");
   w.BeginArray();
   for(int i = 0; i < PositionsTotal(); i++)
     {
      if(PositionGetTicket(i) == 0)
         continue;
      string s = PositionGetString(POSITION_SYMBOL);
      int d = TcDigits(s);
      TcPushString(traded, s);
      w.BeginObject();
      w.KUInt("position_id", (ulong)PositionGetInteger(POSITION_IDENTIFIER));
      w.KStr("symbol", s);
      w.KStr("side", PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY ? "buy" : "sell");
      w.KDec("volume", PositionGetDouble(POSITION_VOLUME), TcVolumeDigits(s));
      w.KDec("open_price", PositionGetDouble(POSITION_PRICE_OPEN), d);
      w.KInt("open_time_ms", TcUtcMsFromMsc(PositionGetInteger(POSITION_TIME_MSC)));
      w.KDecOpt("sl", PositionGetDouble(POSITION_SL), d);
      w.KDecOpt("tp", PositionGetDouble(POSITION_TP), d);
      w.KDec("price_current", full ? PositionGetDouble(POSITION_PRICE_CURRENT) : 0, d);
      w.KDec("swap", PositionGetDouble(POSITION_SWAP), ad);
      w.KDec("profit", full ? PositionGetDouble(POSITION_PROFIT) : 0, ad);
      w.KUInt("magic", (ulong)PositionGetInteger(POSITION_MAGIC));
      w.KStr("comment", PositionGetString(POSITION_COMMENT));
      w.EndObject();
     }
   w.EndArray();
   w.Key("pending");
   w.BeginArray();
   for(int i = 0; i < OrdersTotal(); i++)
     {
      ulong t = OrderGetTicket(i);
      string kind = TcOrderKind((ENUM_ORDER_TYPE)OrderGetInteger(ORDER_TYPE));
      if(t == 0 || kind == "" || kind == "buy" || kind == "sell")
         continue;
      string s = OrderGetString(ORDER_SYMBOL);
      int d = TcDigits(s);
      TcPushString(traded, s);
      w.BeginObject();
      w.KUInt("order_ticket", t);
      w.KStr("symbol", s);
      w.KStr("kind", kind);
      w.KDec("volume", OrderGetDouble(ORDER_VOLUME_CURRENT), TcVolumeDigits(s));
      w.KDec("price", OrderGetDouble(ORDER_PRICE_OPEN), d);
      w.KDecOpt("sl", OrderGetDouble(ORDER_SL), d);
      w.KDecOpt("tp", OrderGetDouble(ORDER_TP), d);
      w.KInt("time_setup_ms", TcUtcMsFromMsc(OrderGetInteger(ORDER_TIME_SETUP_MSC)));
      datetime exp = (datetime)OrderGetInteger(ORDER_TIME_EXPIRATION);
      w.Key("expiration_ms");
      if(exp > 0) w.Int(TcUtcMs(exp)); else w.Null();
      w.KUInt("magic", (ulong)OrderGetInteger(ORDER_MAGIC));
      w.KStr("comment", OrderGetString(ORDER_COMMENT));
      w.EndObject();
     }
   w.EndArray();
   w.Key("tick_values");
   w.BeginArray();
   for(int i = 0; full && i < ArraySize(traded); i++)
     {
      bool seen = false;
      for(int j = 0; j < i; j++)
         if(traded[j] == traded[i])
            seen = true;
      if(seen)
         continue;
      w.BeginObject();
      w.KStr("symbol", traded[i]);
      w.KDec("tick_value_profit", SymbolInfoDouble(traded[i], SYMBOL_TRADE_TICK_VALUE_PROFIT), 8);
      w.KDec("tick_value_loss", SymbolInfoDouble(traded[i], SYMBOL_TRADE_TICK_VALUE_LOSS), 8);
      w.EndObject();
     }
   w.EndArray();
   w.Key("specs");
   w.BeginArray();
   int specStart = w.Length();
   g_specWritten = 0;
   for(int i = 0; i < ArraySize(g_specReq) && w.Length() - specStart < TC_STATE_SPEC_BYTES; i++)
     {
      TcWriteSpec(w, g_specReq[i]);
      g_specWritten++;
     }
   w.EndArray();
   w.EndObject();
   return w.Text();
  }

void TcPushState(const bool force)
  {
   if(g_session == "")
      return;
   string fingerprint = TcStateBody(false);
   //--- On the trade server's clock (it runs between ticks and over weekends), either way: it
   //--- jumps back an hour when the broker leaves summer time.
   long now = (long)TimeTradeServer();
   bool stale = MathAbs(now - g_lastStateTime) >= InpStateEverySec;
   bool newDay = now / 86400 != g_lastStateDay;   // the node's daily loss rules start the day from it
   double equity = AccountInfoDouble(ACCOUNT_EQUITY);
   bool moved = g_lastStateEquity > 0 ? MathAbs(equity - g_lastStateEquity) >= g_lastStateEquity * TC_STATE_EQUITY_MOVE
                                      : equity != g_lastStateEquity;
   if(!force && !stale && !newDay && !moved && fingerprint == g_lastState && ArraySize(g_specReq) == 0)
      return;
   CTcJson *a;
   if(!TcCall("/ea/v1/state", TcStateBody(true), a))
      return;
   CTcJson *ool = a.Get("out_of_line");
   for(int i = 0; ool != NULL && i < ool.Size(); i++)
      PrintFormat("Tradecast: the node says: %s", ool.At(i).Str("reason"));
   delete a;
   g_lastState = fingerprint;
   g_lastStateTime = now;
   g_lastStateEquity = equity;
   g_lastStateDay = now / 86400;
   if(g_specWritten > 0)   // the specs sent leave the queue; the rest go in the next push
      ArrayRemove(g_specReq, 0, g_specWritten);
  }

bool TcDealPushed(const ulong ticket)
  {
   for(int i = 0; i < ArraySize(g_dealsPushed); i++)
      if(g_dealsPushed[i] == ticket)
         return true;
   return false;
  }

//--- deals: the history since the cursor (times converted to UTC), oldest first.
void TcPushDeals()
  {
   if(g_session == "")
      return;
   datetime from = TcServerTime(g_dealsFrom) - 1;
   if(!HistorySelect(from, TimeTradeServer() + 3600))
      return;
   int ad = TcAccountDigits();
   CTcJsonWriter w;
   w.BeginObject();
   w.KStr("session_id", g_session);
   w.KInt("from_ms", g_dealsFrom);
   w.Key("deals");
   w.BeginArray();
   ulong tickets[];
   int n = 0;
   for(int i = 0; i < HistoryDealsTotal() && n < TC_MAX_DEALS; i++)
     {
      ulong t = HistoryDealGetTicket(i);
      if(t == 0 || TcDealPushed(t))
         continue;
      long time_ms = TcUtcMsFromMsc(HistoryDealGetInteger(t, DEAL_TIME_MSC));
      if(time_ms < g_dealsFrom)
         continue;
      string s = HistoryDealGetString(t, DEAL_SYMBOL);
      int d = (s != "") ? TcDigits(s) : 5;
      int vd = (s != "") ? TcVolumeDigits(s) : 2;
      w.BeginObject();
      w.KUInt("deal_ticket", t);
      w.KUInt("order_ticket", (ulong)HistoryDealGetInteger(t, DEAL_ORDER));
      w.KUInt("position_id", (ulong)HistoryDealGetInteger(t, DEAL_POSITION_ID));
      w.KStr("symbol", s);
      w.KStr("kind", TcDealKind((ENUM_DEAL_TYPE)HistoryDealGetInteger(t, DEAL_TYPE)));
      w.KStr("entry", TcDealEntry((ENUM_DEAL_ENTRY)HistoryDealGetInteger(t, DEAL_ENTRY)));
      w.KStr("reason", TcDealReason((ENUM_DEAL_REASON)HistoryDealGetInteger(t, DEAL_REASON)));
      w.KDec("volume", HistoryDealGetDouble(t, DEAL_VOLUME), vd);
      w.KDec("price", HistoryDealGetDouble(t, DEAL_PRICE), d);
      w.KDec("commission", HistoryDealGetDouble(t, DEAL_COMMISSION), ad);
      w.KDec("swap", HistoryDealGetDouble(t, DEAL_SWAP), ad);
      w.KDec("profit", HistoryDealGetDouble(t, DEAL_PROFIT), ad);
      w.KDec("fee", HistoryDealGetDouble(t, DEAL_FEE), ad);
      w.KUInt("magic", (ulong)HistoryDealGetInteger(t, DEAL_MAGIC));
      w.KStr("comment", HistoryDealGetString(t, DEAL_COMMENT));
      w.KInt("time_ms", time_ms);
      w.EndObject();
      ArrayResize(tickets, n + 1);
      tickets[n++] = t;
     }
   w.EndArray();
   w.EndObject();
   if(n == 0)
      return;
   CTcJson *a;
   if(!TcCall("/ea/v1/deals", w.Text(), a))
      return;
   g_dealsFrom = a.Long("deals_from_ms", g_dealsFrom);
   delete a;
   if(ArraySize(g_dealsPushed) + n > TC_MAX_REMEMBERED_DEALS)
      ArrayResize(g_dealsPushed, 0);   // the node deduplicates by deal ticket anyway
   for(int i = 0; i < n; i++)
     {
      int m = ArraySize(g_dealsPushed);
      ArrayResize(g_dealsPushed, m + 1);
      g_dealsPushed[m] = tickets[i];
     }
  }

//--- Writes the closed bars of symbol/timeframe with UTC open time in [from_ms, to_ms].
int TcWriteBars(CTcJsonWriter &w, const string symbol, const string tfName, const long from_ms,
                const long to_ms, const int room, long &last_ms)
  {
   ENUM_TIMEFRAMES tf = TcTf(tfName);
   MqlRates rates[];
   datetime now = TimeTradeServer();
   datetime stop = (to_ms == LONG_MAX) ? now : TcServerTime(to_ms);
   int got = CopyRates(symbol, tf, TcServerTime(from_ms), stop, rates);
   int written = 0;
   int digits = TcDigits(symbol);
   for(int i = 0; i < got && written < room; i++)
     {
      if(rates[i].time + PeriodSeconds(tf) > now)
         continue;  // still forming: only closed bars go out
      long t = TcUtcMs(rates[i].time);
      if(t < from_ms || t > to_ms)
         continue;
      w.BeginObject();
      w.KStr("symbol", symbol);
      w.KStr("timeframe", tfName);
      w.KInt("time_ms", t);
      w.KDec("open", rates[i].open, digits);
      w.KDec("high", rates[i].high, digits);
      w.KDec("low", rates[i].low, digits);
      w.KDec("close", rates[i].close, digits);
      w.KInt("tick_volume", rates[i].tick_volume);
      w.KInt("spread_points", rates[i].spread);
      w.EndObject();
      written++;
      if(t > last_ms)
         last_ms = t;
     }
   return written;
  }

//--- bars: backfills first, then each subscription since its cursor.
void TcPushBars()
  {
   if(g_session == "")
      return;
   CTcJsonWriter w;
   w.BeginObject();
   w.KStr("session_id", g_session);
   w.Key("bars");
   w.BeginArray();
   int total = 0;
   long ignored = 0;
   for(int i = 0; i < ArraySize(g_bfSym); i++)
      total += TcWriteBars(w, g_bfSym[i], g_bfTf[i], g_bfFrom[i], g_bfTo[i], TC_MAX_BARS - total, ignored);
   long newPushed[];
   ArrayResize(newPushed, ArraySize(g_subSym));
   for(int i = 0; i < ArraySize(g_subSym); i++)
     {
      long last = g_barsPushed[i];
      long from = (g_barsFrom[i] > g_barsPushed[i] + 1) ? g_barsFrom[i] : g_barsPushed[i] + 1;
      total += TcWriteBars(w, g_subSym[i], g_subTf[i], from, LONG_MAX, TC_MAX_BARS - total, last);
      newPushed[i] = last;
     }
   w.EndArray();
   w.EndObject();
   if(total == 0)
     {
      ArrayResize(g_bfSym, 0); ArrayResize(g_bfTf, 0); ArrayResize(g_bfFrom, 0); ArrayResize(g_bfTo, 0);
      return;
     }
   CTcJson *a;
   if(!TcCall("/ea/v1/bars", w.Text(), a))
      return;
   ArrayResize(g_bfSym, 0); ArrayResize(g_bfTf, 0); ArrayResize(g_bfFrom, 0); ArrayResize(g_bfTo, 0);
   for(int i = 0; i < ArraySize(g_subSym); i++)
      g_barsPushed[i] = newPushed[i];
   CTcJson *cursors = a.Get("bars_from");
   for(int i = 0; cursors != NULL && i < cursors.Size(); i++)
     {
      CTcJson *c = cursors.At(i);
      for(int j = 0; j < ArraySize(g_subSym); j++)
         if(g_subSym[j] == c.Str("symbol") && g_subTf[j] == c.Str("timeframe"))
            g_barsFrom[j] = c.Long("from_ms");
     }
   delete a;
  }

//--- The equity floor, enforced by the EA alone when the node has been silent for
//--- InpFloorSilenceSec: Tradecast's positions are closed, and the next hello reports it.
void TcEnforceFloorIfNodeSilent()
  {
   if(!g_hasFloor)
      return;
   if(GetTickCount64() - g_link.LastContactTick() < (ulong)InpFloorSilenceSec * 1000)
      return;
   double equity = AccountInfoDouble(ACCOUNT_EQUITY);
   if(equity >= g_floor)
     {
      g_floorFailures = 0;
      g_floorNextTick = 0;
      return;
     }
   // After closes that failed, the next attempt waits (not every cycle, not all weekend).
   if(GetTickCount64() < g_floorNextTick)
      return;
   int closed = 0, removed = 0, failed = 0;
   ulong magic = TcMagic(InpMagic, 0);
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      if(PositionGetTicket(i) == 0 || !TcIsOurs((ulong)PositionGetInteger(POSITION_MAGIC), InpMagic))
         continue;
      MqlTradeResult res;
      TcClosePosition((ulong)PositionGetInteger(POSITION_IDENTIFIER), 0, magic, "tc:equity-floor", InpMaxSlippagePoints, res);
      if(TcClassify(res.retcode) == TC_OUTCOME_DONE)
         closed++;
      else
         failed++;
     }
   //--- Tradecast's pending orders go too: one left would open a position after the floor.
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      ulong t = OrderGetTicket(i);
      if(t == 0 || !TcIsOurs((ulong)OrderGetInteger(ORDER_MAGIC), InpMagic))
         continue;
      MqlTradeRequest req;
      MqlTradeResult res;
      ZeroMemory(req);
      req.action = TRADE_ACTION_REMOVE;
      req.order = t;
      TcOrderSend(req, res);
      if(TcClassify(res.retcode) == TC_OUTCOME_DONE)
         removed++;
      else
         failed++;
     }
   if(closed + removed + failed == 0)
      return;
   if(failed > 0)
     {
      g_floorFailures++;
      g_floorNextTick = GetTickCount64() + TcBackoffMs(g_floorFailures, TC_FLOOR_RETRY_FIRST_MS, TC_FLOOR_RETRY_MAX_MS);
     }
   else
     {
      g_floorFailures = 0;
      g_floorNextTick = 0;
     }
   TcJournal("floor", StringFormat("equity %.2f below the floor %.2f while the node is silent: closed %d of Tradecast's positions, deleted %d of its pending orders, %d failed",
                                   equity, g_floor, closed, removed, failed));
   if(!g_breach)
     {
      g_breachTime = TcNowUtcMs();
      g_breachClosed = 0;
     }
   g_breach = true;
   g_breachEquity = equity;
   g_breachFloor = g_floor;
   g_breachClosed += closed;
   g_breachFailed = failed;
   g_session = "";
  }

//--- Whether the terminal is connected to the trade server and logged in: before that, at
//--- terminal start, ACCOUNT_LOGIN reads 0 and tick values read 0, so no hello is sent.
bool g_warnedNotReady = false;
bool TcTerminalReady()
  {
   bool ready = TerminalInfoInteger(TERMINAL_CONNECTED) != 0 && AccountInfoInteger(ACCOUNT_LOGIN) != 0;
   if(!ready && !g_warnedNotReady)
      Print("Tradecast: waiting for the terminal to connect to the trade server and log in");
   g_warnedNotReady = !ready;
   return ready;
  }

//--- One cycle of the timer: floor, hello if needed, pushes, one long-poll and what it brought.
void TcCycle()
  {
   int offsetBefore = g_tcOffset;
   TcNoteOffset();   // a daylight-saving switch is seen within a cycle, not at the next hello
   if(g_tcOffset != offsetBefore && g_session != "")
     {
      // The node keeps the offset of the hello for its server day (the daily loss rules):
      // introduce the account again with the new one.
      Print("Tradecast: the server's UTC offset changed: introducing the account again");
      g_session = "";
     }
   TcEnforceFloorIfNodeSilent();
   TcExpireOwn();
   if(g_session == "")
     {
      // After a failed hello, wait out the backoff: the hello is not rebuilt and re-sent
      // every 100 ms tick.
      if(GetTickCount64() < g_helloNextTick || !TcTerminalReady())
         return;
      if(!TcHello())
        {
         if(!g_lastCallNoAnswer)
           {
            g_helloFailures++;
            g_helloNextTick = GetTickCount64() + TcBackoffMs(g_helloFailures, TC_RETRY_FIRST_MS, TC_RETRY_MAX_MS);
           }
         return;
        }
      g_helloFailures = 0;
      g_helloNextTick = 0;
     }
   TcPushBars();
   TcPushDeals();
   TcPushState(false);
   if(g_session == "")
      return;
   CTcJsonWriter w;
   w.BeginObject();
   w.KStr("session_id", g_session);
   w.KInt("wait_ms", g_pollWait);
   w.KInt("terminal_time_ms", TcNowUtcMs());
   w.EndObject();
   CTcJson *a;
   if(!TcCall("/ea/v1/poll", w.Text(), a))
      return;
   g_hasFloor = !a.IsNull("equity_floor");
   g_floor = a.Dec("equity_floor");
   bool busy = false;
   CTcJson *orders = a.Get("orders");
   for(int i = 0; orders != NULL && i < orders.Size(); i++)
     {
      TcExecuteOrder(orders.At(i));
      busy = true;
     }
   CTcJson *commands = a.Get("commands");
   for(int i = 0; commands != NULL && i < commands.Size(); i++)
     {
      TcExecuteCommand(commands.At(i));
      busy = true;
     }
   delete a;
   if(busy)
     {
      TcPushBars();
      TcPushDeals();
      TcPushState(true);
     }
  }

//--- Which EA this is, sent at hello: the same for this chart of this terminal installation
//--- across re-inits and restarts (the chart id "generally stays the same from session to
//--- session"), another for an EA on another chart or terminal. The node refuses a second EA on
//--- an account while the first polls (409 another-ea): both would execute every order.
string TcInstance()
  {
   uchar bytes[];
   TcUtf8(TerminalInfoString(TERMINAL_DATA_PATH) + "|" + IntegerToString(ChartID()), bytes);
   return StringSubstr(TcSha256Hex(bytes), 0, 16);
  }

//+------------------------------------------------------------------+
//| Events                                                            |
//+------------------------------------------------------------------+
int OnInit()
  {
   if(MQLInfoInteger(MQL_TESTER))
     {
      Print("Tradecast: WebRequest does not run in the Strategy Tester; attach the EA to a live or demo chart");
      return INIT_FAILED;
     }
   if(StringLen(InpKeyId) == 0 || StringLen(InpSecret) == 0)
     {
      Print("Tradecast: set the key id and the secret in the inputs (tradecast-node ea-key new)");
      return INIT_PARAMETERS_INCORRECT;
     }
   //--- TcCheckInputs: magic 0 is the magic of hand trades and of EAs that set none (Tradecast's
   //--- positions could not be told apart); negative periods make no sense.
   if(InpMagic == 0)
     {
      Print("Tradecast: InpMagic must not be 0: give this install its own number");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(InpFloorSilenceSec < 0 || InpStateEverySec <= 0 || InpPollWaitMs < 0 || InpPollWaitMs > 30000)
     {
      Print("Tradecast: InpFloorSilenceSec must be 0 or more, InpStateEverySec 1 or more, InpPollWaitMs 0 to 30000");
      return INIT_PARAMETERS_INCORRECT;
     }
   if(StringFind(InpNodeUrl, "http://127.0.0.1") != 0 && StringFind(InpNodeUrl, "http://localhost") != 0)
      Print("Tradecast: warning: the node URL is not on 127.0.0.1; the EA link is meant for this PC only");
   if(!TcSelfTest())
      return INIT_FAILED;
   MathSrand((int)GetTickCount());
   TcNoteOffset();
   g_pollWait = InpPollWaitMs;
   g_instance = TcInstance();
   g_link.Init(InpNodeUrl, InpKeyId, InpSecret);
   if(!EventSetMillisecondTimer(TC_TIMER_MS))
     {
      Print("Tradecast: cannot start the timer");
      return INIT_FAILED;
     }
   PrintFormat("Tradecast EA %s: node %s, magic %u, server UTC offset %d s, instance %s", TC_EA_VERSION, InpNodeUrl, InpMagic, g_tcOffset, g_instance);
   return INIT_SUCCEEDED;
  }

void OnDeinit(const int reason)
  {
   EventKillTimer();
  }

//--- WebRequest blocks; a timer event is not queued while one is being handled, and g_busy
//--- keeps one cycle (so one poll) in flight at a time.
void OnTimer()
  {
   if(g_busy)
      return;
   g_busy = true;
   TcCycle();
   g_busy = false;
  }
//+------------------------------------------------------------------+
