//+------------------------------------------------------------------+
//| Tradecast/Trade.mqh                                               |
//| Execution for the EA link (ea-link.md, "Never twice, never       |
//| lost"): magic = (input_magic << 32) | order_no, comment           |
//| "tc:<order id>", the look-up by magic among positions, pending   |
//| orders and the last day's deals before every send and after      |
//| every unknown outcome, CloseAll limited to Tradecast's magic,    |
//| and the conversions of broker server time to UTC.                |
//+------------------------------------------------------------------+
#property strict
#ifndef TC_TRADE_MQH
#define TC_TRADE_MQH

//--- Broker server time minus UTC, seconds, now (read every cycle by TcNoteOffset).
int g_tcOffset = 0;
//--- Every offset the EA has seen and the server time it was first seen at, oldest first: a
//--- broker's daylight-saving switch changes it, and times before the switch keep the old one.
datetime g_offFrom[];
int      g_offVal[];

//--- TimeTradeServer() - TimeGMT(), rounded to the quarter hour (brokers use whole offsets;
//--- the two clocks are read a few ms apart).
int TcServerUtcOffset()
  {
   long diff = (long)TimeTradeServer() - (long)TimeGMT();
   return (int)(MathRound(diff / 900.0) * 900);
  }

//--- Reads the offset (every timer cycle) and remembers a change with the server time it was
//--- seen at. A change is seen within one cycle; brokers switch while the market is closed.
void TcNoteOffset()
  {
   int o = TcServerUtcOffset();
   int n = ArraySize(g_offVal);
   if(n == 0 || g_offVal[n - 1] != o)
     {
      if(n > 0)
         PrintFormat("Tradecast: the server's UTC offset changed from %d s to %d s (daylight saving); times from now on use the new one",
                     g_offVal[n - 1], o);
      ArrayResize(g_offFrom, n + 1);
      ArrayResize(g_offVal, n + 1);
      g_offFrom[n] = TimeTradeServer();
      g_offVal[n] = o;
     }
   g_tcOffset = o;
  }

//--- The offset in force at a server time: the newest seen at or before it. Times before the
//--- EA's start get the first offset seen (MT5 keeps no history of the server's offsets).
int TcOffsetAt(const datetime server_time)
  {
   int n = ArraySize(g_offVal);
   if(n == 0)
      return g_tcOffset;
   for(int i = n - 1; i >= 0; i--)
      if(g_offFrom[i] <= server_time)
         return g_offVal[i];
   return g_offVal[0];
  }

//--- Server time (seconds) to unix ms UTC, with the offset in force then.
long TcUtcMs(const datetime server_time) { return ((long)server_time - TcOffsetAt(server_time)) * 1000; }
//--- Server time in ms (the *_TIME_MSC properties) to unix ms UTC.
long TcUtcMsFromMsc(const long server_msc)
  {
   return server_msc - (long)TcOffsetAt((datetime)(server_msc / 1000)) * 1000;
  }
//--- Unix ms UTC to server time (seconds), with the offset in force then.
datetime TcServerTime(const long utc_ms)
  {
   datetime guess = (datetime)(utc_ms / 1000 + g_tcOffset);
   return (datetime)(utc_ms / 1000 + TcOffsetAt(guess));
  }

ulong TcMagic(const uint input_magic, const uint order_no)
  {
   return ((ulong)input_magic << 32) | (ulong)order_no;
  }

bool TcIsOurs(const ulong magic, const uint input_magic)
  {
   return (uint)(magic >> 32) == input_magic;
  }

string TcComment(const string order_id) { return "tc:" + order_id; }

bool TcIsNetting()
  {
   return AccountInfoInteger(ACCOUNT_MARGIN_MODE) != ACCOUNT_MARGIN_MODE_RETAIL_HEDGING;
  }

//--- Digits of a volume step (0.01 -> 2), so volumes go out as "0.10".
int TcVolumeDigits(const string symbol)
  {
   double step = SymbolInfoDouble(symbol, SYMBOL_VOLUME_STEP);
   int d = 0;
   while(d < 8 && MathAbs(step * MathPow(10, d) - MathRound(step * MathPow(10, d))) > 1e-9)
      d++;
   return d;
  }

int TcDigits(const string symbol) { return (int)SymbolInfoInteger(symbol, SYMBOL_DIGITS); }

//--- The filling policy MT5 accepts for an order of `type` on `symbol`, from its execution mode
//--- (SYMBOL_TRADE_EXEMODE) and filling flags (SYMBOL_FILLING_MODE); anything else is refused
//--- with 10030. Limit orders: RETURN (always allowed). Market and stop orders (a stop becomes a
//--- market order when it triggers): FOK if flagged, else IOC if flagged, else FOK under
//--- instant or request execution (always allowed there, RETURN never is), else RETURN
//--- (exchange execution, or a market-execution symbol that sets no flag).
ENUM_ORDER_TYPE_FILLING TcFilling(const string symbol, const ENUM_ORDER_TYPE type)
  {
   if(type == ORDER_TYPE_BUY_LIMIT || type == ORDER_TYPE_SELL_LIMIT)
      return ORDER_FILLING_RETURN;
   long modes = SymbolInfoInteger(symbol, SYMBOL_FILLING_MODE);
   if((modes & SYMBOL_FILLING_FOK) != 0)
      return ORDER_FILLING_FOK;
   if((modes & SYMBOL_FILLING_IOC) != 0)
      return ORDER_FILLING_IOC;
   ENUM_SYMBOL_TRADE_EXECUTION exe = (ENUM_SYMBOL_TRADE_EXECUTION)SymbolInfoInteger(symbol, SYMBOL_TRADE_EXEMODE);
   if(exe == SYMBOL_TRADE_EXECUTION_INSTANT || exe == SYMBOL_TRADE_EXECUTION_REQUEST)
      return ORDER_FILLING_FOK;
   return ORDER_FILLING_RETURN;
  }

//--- The lifetime of a pending order (req.type_time) from the symbol's SYMBOL_EXPIRATION_MODE
//--- flags (a mode it does not flag is refused with 10022) and the node's expiry (server time,
//--- 0 = none). With an expiry: SPECIFIED if allowed (exactly the node's), else SPECIFIED_DAY
//--- (the end of that day), else DAY (the end of today), else GTC; `outlives` is then true and
//--- the EA removes the order at the node's expiry itself (TcExpireOwn). Without one: GTC, else
//--- DAY. A symbol that flags nothing gets SPECIFIED/GTC and the server's answer.
ENUM_ORDER_TYPE_TIME TcTypeTime(const string symbol, const datetime expiration, bool &outlives)
  {
   long modes = SymbolInfoInteger(symbol, SYMBOL_EXPIRATION_MODE);
   outlives = false;
   if(expiration == 0)
     {
      if((modes & SYMBOL_EXPIRATION_GTC) == 0 && (modes & SYMBOL_EXPIRATION_DAY) != 0)
         return ORDER_TIME_DAY;
      return ORDER_TIME_GTC;
     }
   if((modes & SYMBOL_EXPIRATION_SPECIFIED) != 0 || modes == 0)
      return ORDER_TIME_SPECIFIED;
   outlives = true;
   if((modes & SYMBOL_EXPIRATION_SPECIFIED_DAY) != 0)
      return ORDER_TIME_SPECIFIED_DAY;
   if((modes & SYMBOL_EXPIRATION_DAY) != 0)
      return ORDER_TIME_DAY;
   return ORDER_TIME_GTC;
  }

//--- What the look-up found.
struct TcFound
  {
   bool              found;
   ulong             order_ticket;
   ulong             deal_ticket;
   ulong             position_id;
   double            price;
   double            volume;
   long              time_ms;
   string            symbol;
  };

void TcFoundClear(TcFound &f)
  {
   f.found = false;
   f.order_ticket = 0;
   f.deal_ticket = 0;
   f.position_id = 0;
   f.price = 0;
   f.volume = 0;
   f.time_ms = 0;
   f.symbol = "";
  }

//--- How far back the look-up reads the deals: on a netting account an order merged into a
//--- position is found only by its deal, and an order offered again after a long outage may be
//--- days old (a day was not enough: such an order was sent twice).
#define TC_LOOKUP_HISTORY_DAYS 30

//--- The last TC_LOOKUP_HISTORY_DAYS days' deals (HistorySelect) with this magic: the newest that opened or reversed a
//--- position (DEAL_ENTRY_IN / INOUT), else the newest of any entry. An SL/TP or stop-out close
//--- carries the position's magic too; acking it would report the close's price as the fill.
bool TcLookupDeals(const ulong magic, TcFound &f)
  {
   datetime now = TimeTradeServer();
   if(!HistorySelect(now - TC_LOOKUP_HISTORY_DAYS * 86400, now + 3600))
      return false;
   ulong best = 0;
   for(int i = HistoryDealsTotal() - 1; i >= 0; i--)
     {
      ulong t = HistoryDealGetTicket(i);
      if(t == 0 || (ulong)HistoryDealGetInteger(t, DEAL_MAGIC) != magic)
         continue;
      long entry = HistoryDealGetInteger(t, DEAL_ENTRY);
      if(entry == DEAL_ENTRY_IN || entry == DEAL_ENTRY_INOUT)
        {
         best = t;
         break;
        }
      if(best == 0)
         best = t;
     }
   if(best != 0)
     {
      ulong t = best;
      f.found = true;
      f.deal_ticket = t;
      f.order_ticket = (ulong)HistoryDealGetInteger(t, DEAL_ORDER);
      f.position_id = (ulong)HistoryDealGetInteger(t, DEAL_POSITION_ID);
      f.price = HistoryDealGetDouble(t, DEAL_PRICE);
      f.volume = HistoryDealGetDouble(t, DEAL_VOLUME);
      f.time_ms = TcUtcMsFromMsc(HistoryDealGetInteger(t, DEAL_TIME_MSC));
      f.symbol = HistoryDealGetString(t, DEAL_SYMBOL);
      return true;
     }
   return false;
  }

//--- The look-up by magic, before every send and after every unknown outcome: open positions,
//--- pending orders, the last day's deals. On a netting account a second order merges into the
//--- open position (which keeps the first order's magic), so the deals are read first there.
bool TcLookup(const ulong magic, TcFound &f)
  {
   TcFoundClear(f);
   if(TcIsNetting() && TcLookupDeals(magic, f))
      return true;
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong t = PositionGetTicket(i);
      if(t == 0 || (ulong)PositionGetInteger(POSITION_MAGIC) != magic)
         continue;
      f.found = true;
      f.order_ticket = t;
      f.position_id = (ulong)PositionGetInteger(POSITION_IDENTIFIER);
      f.price = PositionGetDouble(POSITION_PRICE_OPEN);
      f.volume = PositionGetDouble(POSITION_VOLUME);
      f.time_ms = TcUtcMsFromMsc(PositionGetInteger(POSITION_TIME_MSC));
      f.symbol = PositionGetString(POSITION_SYMBOL);
      return true;
     }
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      ulong t = OrderGetTicket(i);
      if(t == 0 || (ulong)OrderGetInteger(ORDER_MAGIC) != magic)
         continue;
      f.found = true;
      f.order_ticket = t;
      f.price = OrderGetDouble(ORDER_PRICE_OPEN);
      f.volume = OrderGetDouble(ORDER_VOLUME_CURRENT);
      f.time_ms = TcUtcMsFromMsc(OrderGetInteger(ORDER_TIME_SETUP_MSC));
      f.symbol = OrderGetString(ORDER_SYMBOL);
      return true;
     }
   return TcLookupDeals(magic, f);
  }

//--- How a send ended, in the link's words.
#define TC_OUTCOME_DONE     0
#define TC_OUTCOME_REJECTED 1
#define TC_OUTCOME_UNKNOWN  2

//--- 10008 placed, 10009 done, 10010 partial: done. 10012 timeout, 10031 no connection, or no
//--- result at all (retcode 0): unknown, never rejected. Anything else: rejected.
int TcClassify(const uint retcode)
  {
   if(retcode == TRADE_RETCODE_PLACED || retcode == TRADE_RETCODE_DONE || retcode == TRADE_RETCODE_DONE_PARTIAL)
      return TC_OUTCOME_DONE;
   if(retcode == 0 || retcode == TRADE_RETCODE_TIMEOUT || retcode == TRADE_RETCODE_CONNECTION)
      return TC_OUTCOME_UNKNOWN;
   return TC_OUTCOME_REJECTED;
  }

//--- OrderSend, recording MT5's own retcode (0 when there is no result).
bool TcOrderSend(MqlTradeRequest &req, MqlTradeResult &res)
  {
   ZeroMemory(res);
   ResetLastError();
   bool ok = OrderSend(req, res);
   if(!ok && res.retcode == 0)
      PrintFormat("Tradecast: OrderSend gave no result (error %d)", GetLastError());
   return ok;
  }

//--- The position a deal belongs to (0 when unknown).
ulong TcDealPosition(const ulong deal)
  {
   if(deal == 0 || !HistoryDealSelect(deal))
      return 0;
   return (ulong)HistoryDealGetInteger(deal, DEAL_POSITION_ID);
  }

//--- Selects the open position whose POSITION_IDENTIFIER is `position_id` (what the link
//--- carries) and returns its POSITION_TICKET, 0 when none is open. The two differ after a
//--- netting reversal and at brokers that roll swap by re-opening positions, and MT5 wants the
//--- ticket: PositionSelectByTicket(identifier) and req.position = identifier are refused (10036).
ulong TcSelectPosition(const ulong position_id)
  {
   if(position_id == 0)
      return 0;
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong t = PositionGetTicket(i);   // selects it
      if(t != 0 && (ulong)PositionGetInteger(POSITION_IDENTIFIER) == position_id)
         return t;
     }
   return 0;
  }

//--- How many times a close is sent when the dealer requotes.
#define TC_CLOSE_ATTEMPTS 3

//--- 10004 requote, 10020 prices changed, 10021 no quotes: worth sending again at once.
bool TcIsRequote(const uint retcode)
  {
   return retcode == TRADE_RETCODE_REQUOTE || retcode == TRADE_RETCODE_PRICE_CHANGED
          || retcode == TRADE_RETCODE_PRICE_OFF;
  }

//--- One close request at the current bid/ask.
bool TcClosePositionOnce(const ulong position_id, const double volume, const ulong magic,
                         const string comment, const uint deviation, MqlTradeResult &res)
  {
   ZeroMemory(res);
   ulong ticket = TcSelectPosition(position_id);
   if(ticket == 0)
     {
      res.retcode = TRADE_RETCODE_POSITION_CLOSED;
      return false;
     }
   MqlTradeRequest req;
   ZeroMemory(req);
   string symbol = PositionGetString(POSITION_SYMBOL);
   bool isBuy = PositionGetInteger(POSITION_TYPE) == POSITION_TYPE_BUY;
   req.action = TRADE_ACTION_DEAL;
   req.position = ticket;
   req.symbol = symbol;
   req.volume = (volume > 0) ? volume : PositionGetDouble(POSITION_VOLUME);
   req.type = isBuy ? ORDER_TYPE_SELL : ORDER_TYPE_BUY;
   req.price = isBuy ? SymbolInfoDouble(symbol, SYMBOL_BID) : SymbolInfoDouble(symbol, SYMBOL_ASK);
   req.deviation = deviation;
   req.magic = magic;
   req.comment = comment;
   req.type_filling = TcFilling(symbol, req.type);
   return TcOrderSend(req, res);
  }

//--- A market close of one position, named by its identifier (all of it when volume is 0).
//--- A requote is not a decision: the close is sent again at the current price, at most
//--- TC_CLOSE_ATTEMPTS times in all.
bool TcClosePosition(const ulong position_id, const double volume, const ulong magic,
                     const string comment, const uint deviation, MqlTradeResult &res)
  {
   bool ok = false;
   for(int attempt = 0; attempt < TC_CLOSE_ATTEMPTS; attempt++)
     {
      if(attempt > 0)
         Sleep(100);   // let the terminal take in the new price
      ok = TcClosePositionOnce(position_id, volume, magic, comment, deviation, res);
      if(!TcIsRequote(res.retcode))
         break;
     }
   return ok;
  }

//--- CloseAll: positions and pending orders whose magic's high 32 bits are input_magic, or
//--- everything when `everything` (only when the trader asked). Returns the first failing
//--- retcode, or TRADE_RETCODE_DONE when nothing of that scope is left.
uint TcCloseAll(const uint input_magic, const bool everything, const string comment, const uint deviation)
  {
   uint firstFailure = 0;
   ulong magic = TcMagic(input_magic, 0);
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong t = PositionGetTicket(i);
      if(t == 0)
         continue;
      if(!everything && !TcIsOurs((ulong)PositionGetInteger(POSITION_MAGIC), input_magic))
         continue;
      ulong id = (ulong)PositionGetInteger(POSITION_IDENTIFIER);
      MqlTradeResult res;
      TcClosePosition(id, 0, magic, comment, deviation, res);
      if(TcClassify(res.retcode) != TC_OUTCOME_DONE && firstFailure == 0)
         firstFailure = (res.retcode == 0) ? TRADE_RETCODE_TIMEOUT : res.retcode;
     }
   for(int i = OrdersTotal() - 1; i >= 0; i--)
     {
      ulong t = OrderGetTicket(i);
      if(t == 0)
         continue;
      if(!everything && !TcIsOurs((ulong)OrderGetInteger(ORDER_MAGIC), input_magic))
         continue;
      MqlTradeRequest req;
      MqlTradeResult res;
      ZeroMemory(req);
      req.action = TRADE_ACTION_REMOVE;
      req.order = t;
      TcOrderSend(req, res);
      if(TcClassify(res.retcode) != TC_OUTCOME_DONE && firstFailure == 0)
         firstFailure = (res.retcode == 0) ? TRADE_RETCODE_TIMEOUT : res.retcode;
     }
   return (firstFailure == 0) ? TRADE_RETCODE_DONE : firstFailure;
  }
//+------------------------------------------------------------------+
#endif // TC_TRADE_MQH
