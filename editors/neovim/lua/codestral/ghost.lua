---@brief Suggestions in buffer coordinates, and their ghost text: extmarks in the namespace `codestral`.

local api = vim.api

local M = {}

M.ns = api.nvim_create_namespace("codestral")

--- An inline completion item converted once, at the edge, from LSP positions to 0-based bytes:
--- replacing [row, col) .. [end_row, end_col) with `text` is what accepting it does.
---@class codestral.Suggestion
---@field text string
---@field row integer
---@field col integer
---@field end_row integer
---@field end_col integer
---@field command? lsp.Command

--- Byte index of an LSP `character` in `line`, clamped to the line's end.
---@param line string
---@param character integer
---@param encoding string "utf-8"|"utf-16"|"utf-32"
---@return integer
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  if vim.fn.has("nvim-0.11") == 1 then
    return vim.str_byteindex(line, encoding, character, false)
  end
  local ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  return ok and col or #line
end

--- The LSP character offset of byte column `col` of `line`: the inverse of byte_col.
---@param line string
---@param col integer
---@param encoding string "utf-8"|"utf-16"|"utf-32"
---@return integer
function M.char_col(line, col, encoding)
  col = math.min(col, #line)
  if encoding == "utf-8" then
    return col
  end
  if vim.fn.has("nvim-0.11") == 1 then
    return vim.str_utfindex(line, encoding, col, false)
  end
  local ok, utf32, utf16 = pcall(vim.str_utfindex, line, col)
  if not ok then
    return col
  end
  return encoding == "utf-16" and utf16 or utf32
end

---@param bufnr integer
---@param row integer
---@return string
local function get_line(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

--- The suggestion an item makes at the cursor, or nil when it would change nothing or does not start there.
--- A range that starts before the cursor is accepted when the text it covers is what the item begins with.
---@param bufnr integer
---@param item lsp.InlineCompletionItem
---@param cursor integer[] 0-based row, byte col
---@param encoding string the client's position encoding
---@return codestral.Suggestion|nil
function M.from_item(bufnr, item, cursor, encoding)
  local text = item.insertText
  if type(text) ~= "string" then
    return nil
  end
  local row, col = cursor[1], cursor[2]
  local command = type(item.command) == "table" and item.command or nil
  local s = { text = text, row = row, col = col, end_row = row, end_col = col, command = command }
  if type(item.range) == "table" then
    local start, stop = item.range.start, item.range["end"]
    local line = get_line(bufnr, start.line)
    s.row, s.col = start.line, M.byte_col(line, start.character, encoding)
    s.end_row = stop.line
    s.end_col = M.byte_col(stop.line == start.line and line or get_line(bufnr, stop.line), stop.character, encoding)
    if s.row ~= row or s.col > col or s.end_row < row or (s.end_row == row and s.end_col < col) then
      return nil
    end
    local typed = line:sub(s.col + 1, col)
    if not vim.startswith(text, typed) then
      return nil
    end
    s.text, s.col = text:sub(#typed + 1), col
  end
  if s.text == "" or s.text == M.replaced(bufnr, s) then
    return nil
  end
  return s
end

--- The buffer text that accepting `s` replaces.
---@param bufnr integer
---@param s codestral.Suggestion
---@return string
function M.replaced(bufnr, s)
  return table.concat(api.nvim_buf_get_text(bufnr, s.row, s.col, s.end_row, s.end_col, {}), "\n")
end

--- Expands tabs to spaces, as virtual text shows tabs as they are, starting at display column `start`.
---@param text string
---@param start integer
---@param tabstop integer
local function expand_tabs(text, start, tabstop)
  local out, width = {}, start
  for chunk, tab in text:gmatch("([^\t]*)(\t?)") do
    out[#out + 1] = chunk
    width = width + vim.fn.strdisplaywidth(chunk)
    if tab ~= "" then
      local pad = tabstop - width % tabstop
      out[#out + 1] = (" "):rep(pad)
      width = width + pad
    end
  end
  return table.concat(out)
end

--- Shows `s` as ghost text: its first line inline at the cursor, the others as virtual lines below,
--- the last one followed by the rest of the cursor line, where accepting puts it.
--- Text that accepting replaces (an auto-closed bracket) is not shown twice.
---@param bufnr integer
---@param s codestral.Suggestion
function M.show(bufnr, s)
  M.clear(bufnr)
  local hl = "CodestralSuggestion"
  local tabstop = vim.bo[bufnr].tabstop
  local lines = vim.split(s.text, "\n", { plain = true })
  local line = get_line(bufnr, s.row)
  local replaced = s.end_row == s.row and line:sub(s.col + 1, s.end_col) or ""
  local first = lines[1]
  if #lines == 1 and vim.endswith(first, replaced) then
    first = first:sub(1, #first - #replaced)
  end
  local opts = { virt_text_pos = "inline", hl_mode = "combine" }
  if first ~= "" then
    opts.virt_text = { { expand_tabs(first, vim.fn.strdisplaywidth(line:sub(1, s.col)), tabstop), hl } }
  end
  if #lines > 1 then
    local rest = get_line(bufnr, s.end_row):sub(s.end_col + 1)
    opts.virt_lines = {}
    for i = 2, #lines do
      local text = i == #lines and lines[i] .. rest or lines[i]
      opts.virt_lines[#opts.virt_lines + 1] = { { expand_tabs(text, 0, tabstop), hl } }
    end
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, s.row, s.col, opts)
end

---@param bufnr integer
function M.clear(bufnr)
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Inserts the first `n` bytes of `s.text` at its start (all of it: replaces its range) and returns
--- what remains to be accepted, or nil. Moves the cursor of `win` to the end of the inserted text.
---@param win integer
---@param bufnr integer
---@param s codestral.Suggestion
---@param n integer
---@return codestral.Suggestion|nil
function M.insert(win, bufnr, s, n)
  local whole = n >= #s.text
  local lines = vim.split(s.text:sub(1, n), "\n", { plain = true })
  local end_row, end_col = s.row, s.col
  if whole then
    end_row, end_col = s.end_row, s.end_col
  end
  api.nvim_buf_set_text(bufnr, s.row, s.col, end_row, end_col, lines)
  local row = s.row + #lines - 1
  local col = (#lines == 1 and s.col or 0) + #lines[#lines]
  api.nvim_win_set_cursor(win, { row + 1, col })
  if whole then
    return nil
  end
  local shift = s.end_row == s.row and col - s.col or 0
  return {
    text = s.text:sub(n + 1),
    row = row,
    col = col,
    end_row = s.end_row + #lines - 1,
    end_col = s.end_col + shift,
    command = s.command,
  }
end

return M
